// The public API from TypeScript: a Realtime chat with a shakehand, a producer invoked on every
// worker, and a plain socket.io-style Server next to it. Checked by `tsc -p examples/typescript`.
import { Realtime, Server, workerIndex, type RealtimeConfig, type RealtimeHooks, type RealtimeServer, type RealtimeSocket, type Socket } from "weroll-native";
import WebRealtime = require("weroll-native/web/Realtime");
import cluster = require("weroll-native/cluster");

/** weroll's `adpater` extension point: observes connections. */
class Audit implements RealtimeHooks {
  constructor(private readonly server: RealtimeServer) {}
  connect(socket: RealtimeSocket, done: () => void): void {
    this.server.traceLog(`connect ${socket.info.ip} (${socket.peer.forwarded ?? "direct"})`);
    done();
  }
  disconnect(socket: RealtimeSocket): void {
    this.server.traceLog(`disconnect ${socket.id}`);
  }
}

const config: RealtimeConfig = {
  port: Number(process.env.PORT ?? 3001),
  debug: false,
  shakehand: true,
  shakehandTimeout: 10000,
  allowGuest: true,
  compress: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
  connectTimeout: 45000,
  transports: ["polling", "websocket"],
  cors: { origin: ["https://chat.example.com"], credentials: true },
  path: "/socket.io/",
  host: "0.0.0.0",
  requestsTimeout: 5000,
  cluster: {
    enable: process.env.REDIS_HOST !== undefined,
    redis: { host: process.env.REDIS_HOST ?? "127.0.0.1", port: 6379, key: "realtime" },
    presenceInterval: 5000,
  },
  adpater: Audit,
  session: {
    check(auth: string, callback) {
      if (auth === "secret") callback(null, { userid: "alice" });
      else callback(new Error("bad token"));
    },
  },
};

async function main(): Promise<void> {
  if (cluster.isPrimary && process.env.WORKERS) {
    const ctl = cluster.start({ workers: Number(process.env.WORKERS), exec: __filename });
    process.on("SIGINT", () => void ctl?.stop());
    return;
  }

  const realtime = (process.env.WEB ? WebRealtime : Realtime).createServer(config);
  const same: Realtime.RealtimeServer = realtime;
  void same;

  realtime.on("start", (io) => console.log(`realtime up, ${io.stats().sockets} sockets`));
  realtime.on("error", (err) => console.error(`cannot listen on ${err.port}: ${err.message}`));
  realtime.on("shakeHandComplete", (socket, ok) => console.log(socket.id, ok ? "shaken" : "rejected"));
  realtime.on("shakeHandSuccess", (socket: RealtimeSocket) => {
    const who: string | null = socket.clientID;
    socket.helper.enterRoom("lobby").catch(console.error);
    socket.helper.send("welcome", { who, ip: socket.info.ip, since: socket.info.connectTime });
    socket.fire("hello", { worker: workerIndex() });
    socket.on("ping?", (data: unknown, ack?: (reply: unknown) => void) => ack?.({ pong: data }));
  });
  realtime.on("disconnect", (socket) => console.log(`${socket.id} left`));

  // `socket.emit("m", ["chat", {...}])` from a client
  realtime.on("chat", (socket, data: { text: string; room?: string }) => {
    if (data.room) socket.helper.broadcastToRoomWithoutSender(data.room, "chat", data);
    else realtime.broadcastToAll("chat", { ...data, from: socket.clientID });
  });
  realtime.on("private", (socket, data: { to: string; text: string }) => {
    realtime.sendTo(data.to, "private", { from: socket.clientID, text: data.text });
    socket.helper.sendTo(data.to, "seen", {});
  });
  realtime.on("ban", async (_socket, data: { clientID: string }) => {
    const kicked: number = await realtime.kick(data.clientID, { reason: "banned" });
    realtime.broadcastToRoom("lobby", "banned", { clientID: data.clientID, kicked });
  });

  realtime.registerProducer("connections", () => realtime.getConnectionsByClientID("alice").length);
  const port: number = await realtime.start();
  const perWorker: number[] = await realtime.invoke("connections", []);
  realtime.invoke("connections", [], (err, results) => console.log(err ?? results));
  const sockets: RealtimeSocket[] = realtime.getConnectionsByClientID("alice", true);
  const ids: string[] = await realtime.getClusterConnectionsByClientID("alice");
  const members: string[] = await realtime.getClusterRoomMembers("lobby");
  const target: string | null = await realtime.pickServer();
  for (const s of await realtime.servers()) console.log(s.address, s.connections);
  console.log(port, perWorker, sockets.length, ids, members, target, realtime.getClientIDBySocketID("x"));
  realtime.getSocketInstanceBySocketID("x")?.close();
  realtime.getClientConnectionBySocketID("x")?.helper.kick({ bye: true });

  // The socket.io-style API under it.
  const io = new Server({ cors: { origin: "*" }, transports: ["websocket"], allowEIO3: true });
  const admin = io.of("/admin");
  admin.on("connection", (socket: Socket) => {
    socket.join(["ops", `user:${socket.handshake.auth.user ?? "anon"}`]);
    socket.emit("rooms", [...socket.rooms]);
    socket.timeout(1000).emit("confirm", 1, (err: Error | null, answer: unknown) => console.log(err, answer));
    socket.onAny((event, ...args) => console.log(event, args));
    socket.on("disconnect", (reason) => console.log(reason));
    socket.broadcast.to("ops").except(socket.id).emit("joined", socket.id);
    socket.onAnyOutgoing((event) => console.log("out", event));
    socket.conn.on("upgrade", (t) => console.log(socket.client.id, t.name, socket.conn.transport.name));
  });
  // What monitoring tools (the admin UI) read.
  io.engine.on("connection", (conn) => conn.on("close", (reason) => console.log(conn.id, reason, io.engine.clientsCount)));
  admin.adapter.on("join-room", (room, id) => console.log(id, "joined", room));
  io.on("new_namespace", (nsp) => console.log(nsp.name));
  io.on("adapter", (status) => console.log(status.up, status.detail));
  const ioPort: number = await io.listen(0, "127.0.0.1");
  io.to("ops").emit("tick", Date.now());
  const remote = await io.in("ops").fetchSockets();
  remote.forEach((r) => r.emit("hello"));
  const rooms: Set<string> = await admin.adapter.allRooms();
  admin.serverSideEmit("sync", { port: ioPort }, (err: Error | null, replies: unknown[]) => console.log(err, replies, rooms));
  io.local.disconnectSockets(true);

  const stop = async (): Promise<void> => {
    await Promise.all([realtime.close(), io.close()]);
  };
  process.once("SIGTERM", () => void stop());
  realtime.unref();
  io.unref();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
