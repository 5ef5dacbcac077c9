// pm2 process file for examples/app.js:
//
//   pm2 start examples/ecosystem.config.js
//
// pm2's cluster mode gives each instance NODE_APP_INSTANCE = 0..3 and keeps that number across
// restarts; weroll-native reads it as the worker index, so instance i listens on PORT + i.
module.exports = {
  apps: [
    {
      name: "weroll-realtime",
      script: "./app.js",
      cwd: __dirname,
      instances: 4,
      exec_mode: "cluster",
      // `pm2 reload`: the new instance of slot i needs the port the old one still holds, so it
      // retries the bind (Realtime config `bindRetryMs`, default 5 s) while pm2 stops the old
      // one after listen_timeout; the old one closes its listener first thing on SIGINT.
      // (No wait_ready: the new instance cannot be ready before the old one is gone.)
      listen_timeout: 2000,
      kill_timeout: 5000,
      env: {
        NODE_ENV: "production",
        PORT: 3001, // Realtime base port: instances use 3001..3004
        HTTP_PORT: 3000, // the chat page, shared by the instances
        WEROLL_WORKER_COUNT: 4,
        REDIS_HOST: "127.0.0.1",
        REDIS_PORT: 6379,
      },
    },
  ],
};
