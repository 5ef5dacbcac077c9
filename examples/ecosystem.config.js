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
      // app.js sends "ready" once its Realtime port is bound; on `pm2 reload` the old instance
      // is stopped only then, and it closes its listener on SIGINT.
      wait_ready: true,
      listen_timeout: 10000,
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
