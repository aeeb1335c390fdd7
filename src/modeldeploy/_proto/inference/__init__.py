"""
Generated code for the Open Inference Protocol's gRPC service (package ``inference``).

``grpc_service_pb2*`` are generated from ``proto/inference/grpc_service.proto``; do not
edit them. The messages live in a private descriptor pool (see the proto file's header),
so they coexist in one process with any other copy of the protocol, tritonclient's
among them.
"""
