"""Tests of modeldeploy.monitors."""
