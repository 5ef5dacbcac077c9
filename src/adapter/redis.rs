//! The Redis adapter: `@socket.io/redis-adapter` 8.x classic wire format over `fred`.
