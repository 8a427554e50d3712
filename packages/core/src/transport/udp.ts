import * as dgram from "node:dgram";
import * as dns from "node:dns";
import { isIP } from "node:net";
import { bindOrThrow, checkBindTarget } from "./bind.js";
import { TransportSendError } from "./errors.js";
import { fail } from "./shared.js";
import type { Destination, SendErrorTarget, Source, Transport, TransportSink } from "./types.js";

const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;

export interface UdpTransportOptions {
  /** IP literal to bind (no brackets); an IPv6 literal gives a udp6 socket. */
  address: string;
  /** 0 = ephemeral; `localPort` reports the real one. */
  port: number;
  sink: TransportSink;
  /** SO_RCVBUF, default 4 MiB (failures to set it are ignored). */
  recvBufferSize?: number;
  /** SO_SNDBUF, default 4 MiB (failures to set it are ignored). */
  sendBufferSize?: number;
  /** Hears socket errors nobody asked about (ICMP errors on sends without a target…). Default: ignored. */
  onSocketError?: (err: Error) => void;
}

/** One datagram = one message. Unreliable: the transaction layer retransmits. */
export class UdpTransport implements Transport {
  // The Transport members and the close state, declared as ws.ts and tcp.ts declare theirs: the
  // same interface, not shared code (the values and the close paths are each transport's own).
  readonly protocol = "UDP" as const;
  readonly reliable = false;
  readonly localAddress: string;
  readonly localPort: number;
  private closed = false;
  private closing: Promise<void> | undefined;

  /** @internal use `createUdpTransport`. */
  constructor(
    private readonly socket: dgram.Socket,
    private readonly sink: TransportSink,
    localAddress: string,
    localPort: number,
  ) {
    this.localAddress = localAddress;
    this.localPort = localPort;
    socket.on("message", (msg, rinfo) => this.onDatagram(msg, rinfo));
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const source: Source = {
      protocol: "UDP",
      address: rinfo.address,
      port: rinfo.port,
      localAddress: this.localAddress,
      localPort: this.localPort,
    };
    // dgram hands each datagram its own Buffer: no copy needed.
    this.sink.onMessage(msg, source);
  }

  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    if (this.closed) {
      if (onError) fail(onError, new TransportSendError("ECLOSED", dest, "transport closed"));
      return;
    }
    try {
      if (onError) {
        this.socket.send(data, dest.port, dest.address, (err) => {
          if (err) onError.transportError(new TransportSendError(codeOf(err), dest, err.message, err));
        });
      } else {
        // Without a callback, a failure is emitted as 'error' on the socket, which we listen to.
        this.socket.send(data, dest.port, dest.address);
      }
    } catch (err) {
      // Synchronous throws: bad port, socket not running…
      if (onError) {
        const e = err instanceof Error ? err : new Error(String(err));
        fail(onError, new TransportSendError(codeOf(e), dest, e.message, e));
      }
    }
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = new Promise<void>((resolve) => {
        try {
          this.socket.close(() => resolve());
        } catch {
          resolve(); // already closed
        }
      });
    }
    return this.closing;
  }
}

/** Bind a UDP socket and start receiving. Rejects with `TransportBindError` when the bind fails. */
export async function createUdpTransport(opts: UdpTransportOptions): Promise<UdpTransport> {
  const family = checkBindTarget("UDP", opts.address, opts.port);
  const socket = dgram.createSocket({
    type: family === 6 ? "udp6" : "udp4",
    ipv6Only: family === 6,
    lookup: literalLookup,
  });
  await bindOrThrow(
    socket,
    "UDP",
    opts.address,
    opts.port,
    () => socket.bind({ address: opts.address, port: opts.port, exclusive: true }),
    () => {
      try {
        socket.close();
      } catch {
        // never bound: nothing to close
      }
    },
  );

  // From here on, socket errors (ICMP port unreachable reported on a later send,
  // a send without callback that failed) must never become an uncaught 'error'.
  const onSocketError = opts.onSocketError;
  socket.on("error", (err) => onSocketError?.(err));

  try {
    socket.setRecvBufferSize(opts.recvBufferSize ?? DEFAULT_SOCKET_BUFFER);
  } catch {
    // the kernel may refuse (rmem_max); the default buffer still works
  }
  try {
    socket.setSendBufferSize(opts.sendBufferSize ?? DEFAULT_SOCKET_BUFFER);
  } catch {
    // likewise
  }

  const bound = socket.address();
  return new UdpTransport(socket, opts.sink, opts.address, bound.port);
}

/**
 * The engine sends to IP literals only (names are resolved before, RFC 3263).
 * dgram looks up every destination, and its default lookup answers even a
 * literal one tick later: a queued callback and its allocations per datagram.
 * A literal is answered here at once; anything else still goes to the DNS.
 */
function literalLookup(
  address: string,
  family: unknown,
  callback: (err: Error | null, address: string, family: number) => void,
): void {
  const f = isIP(address);
  if (f !== 0) callback(null, address, f);
  else dns.lookup(address, family as dns.LookupOneOptions, callback as never);
}

function codeOf(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === "string" ? code : "EIO";
}
