//! A small client for the Docker Engine API over its unix socket.
