"""Shared test machinery: the servers, isolation per test run, and a running Ferry."""
