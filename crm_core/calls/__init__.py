"""The calls domain."""
