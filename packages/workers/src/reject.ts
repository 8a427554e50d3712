/**
 * The coordinator's own stateless answer to a request it will not hand to a
 * shard (overload, closing): built from the raw bytes by a line scan, without
 * the parser — this runs exactly when the main thread is busiest.
 *
 * RFC 3261 §8.2.6 / §8.2.6.2: the response copies Via (all values, in
 * order), From, To (a tag is added when the request had none), Call-ID and
 * CSeq; §21.5.4: 503 with Retry-After. Where it goes is §18.2.2 with RFC 3581:
 * the source address, at the source port when the top Via asked for rport,
 * else at the sent-by port (default 5060); on a stream, back on the connection.
 */
import { type Destination, newTag, type Source } from "@siptm/core";
import { newViaScan, scanTopVia } from "./scan.js";

const KEEP = new Set(["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]);

/** The response bytes, or undefined when the request has no Via/CSeq to answer along (then it is dropped). */
export function buildReject(
  data: Buffer,
  status: number,
  reason: string,
  headers: ReadonlyArray<readonly [string, string]> = [],
): Buffer | undefined {
  let end = data.indexOf("\r\n\r\n");
  if (end < 0) end = Math.min(data.length, 16_384);
  const lines = data.toString("latin1", 0, end).split(/\r?\n/);
  const out: string[] = [`SIP/2.0 ${status} ${reason}`];
  let via = false;
  let cseq = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) break;
    if (line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) continue; // folded continuation: dropped
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!KEEP.has(name)) continue;
    if (name === "via" || name === "v") via = true;
    if (name === "cseq") cseq = true;
    if ((name === "to" || name === "t") && !/;\s*tag\s*=/i.test(line.slice(line.lastIndexOf(">") + 1)))
      out.push(`${line};tag=${newTag()}`);
    else out.push(line);
  }
  if (!via || !cseq) return undefined;
  for (const [name, value] of headers) out.push(`${name}: ${value}`);
  out.push("Content-Length: 0", "", "");
  return Buffer.from(out.join("\r\n"), "latin1");
}

/** Where a response to this request goes (§18.2.2, RFC 3581). */
export function replyDestination(data: Buffer, source: Source): Destination {
  if (source.protocol !== "UDP")
    return {
      protocol: source.protocol,
      address: source.address,
      port: source.port,
      connectionId: source.connectionId,
    };
  const via = newViaScan();
  scanTopVia(data, via);
  const port = via.rport ? source.port : via.port >= 0 ? via.port : 5060;
  return { protocol: "UDP", address: source.address, port };
}
