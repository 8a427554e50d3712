// Real WebSocket SIP clients for the interop tests: SIP.js and JsSIP running in headless Chromium
// (Debian's `chromium`), driven by playwright-core, over WSS to a SIP server on 127.0.0.1.
//
// Why playwright-core rather than puppeteer-core: it has no dependencies of its own and no install
// script (it never downloads a browser: that is the `playwright` package's job, which we do not
// use), it drives a given Chromium binary (`executablePath`), and it reports every WebSocket
// frame the page sends and receives (page.on("websocket")), which is how these tests read the SIP
// the browser put on the wire, whichever stack made it.
//
// Pieces, each torn down by the test (cleanup in afterEach/finally):
//  - testCert(): a self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI in
//    a fresh temp dir; Chromium trusts exactly that key (--ignore-certificate-errors-spki-list
//    with its SPKI hash), not every certificate.
//  - PageServer: node:http on 127.0.0.1:EPHEMERAL serving the page (browser-page.js), SIP.js's ES
//    modules from node_modules and a JsSIP bundle built here with vite (already installed: it is
//    vitest's), since JsSIP ships CommonJS only.
//  - BrowserPhones: one Chromium, one page, the frames of its WebSockets, the page's API.
import { spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { HOST, type SipHead, sipSummary } from "./sipp.js";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Certificate

export interface TestCert {
  dir: string;
  cert: string;
  key: string;
  /** base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI pin format). */
  spki: string;
  remove(): void;
}

/** A throw-away self-signed certificate (P-256, 2 days) for 127.0.0.1 and localhost. */
export function testCert(): TestCert {
  const dir = mkdtempSync(join(tmpdir(), "siptm-cert-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const r = spawnSync(
    process.env.OPENSSL_BIN ?? "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { encoding: "utf8", timeout: 20_000 },
  );
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `openssl could not make a test certificate (${r.error?.message ?? r.stderr}). ` +
        "Install it with `apt-get install -y openssl`; .ci/run installs it.",
    );
  }
  const der = new X509Certificate(readFileSync(cert)).publicKey.export({ type: "spki", format: "der" });
  const spki = createHash("sha256").update(der).digest("base64");
  return { dir, cert, key, spki, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------------
// The page server

let jssipBundle: Promise<string> | undefined;

/** JsSIP (CommonJS, with `debug`, `events`, `sdp-transform`) as one browser script setting window.JsSIP. */
function buildJssip(): Promise<string> {
  jssipBundle ??= (async () => {
    const { build } = await import("vite");
    const entry = require.resolve("jssip");
    const out = await build({
      configFile: false,
      logLevel: "silent",
      root: dirname(entry),
      build: {
        write: false,
        minify: false,
        emptyOutDir: false,
        lib: { entry, formats: ["iife"], name: "JsSIP", fileName: () => "jssip.js" },
      },
    });
    const outputs = (Array.isArray(out) ? out : [out]) as Array<{ output?: Array<{ code?: string }> }>;
    const code = outputs.flatMap((o) => o.output ?? []).find((c) => typeof c.code === "string")?.code;
    if (!code) throw new Error("vite produced no JsSIP bundle");
    return code;
  })();
  return jssipBundle;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>siptm browser interop</title>
<script src="/jssip.js"></script>
<script type="module" src="/browser-page.js"></script>
</head><body>siptm browser interop</body></html>`;

/** node:http on 127.0.0.1, an ephemeral port: the page, its script, SIP.js's modules, the JsSIP bundle. */
export class PageServer {
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(): Promise<PageServer> {
    const sipjsLib = join(dirname(require.resolve("sip.js/package.json")), "lib");
    const jssip = await buildJssip();
    const pageScript = readFileSync(join(here, "browser-page.js"), "utf8");
    const server = http.createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      const send = (status: number, type: string, body: string) => {
        res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
        res.end(body);
      };
      if (path === "/") return send(200, "text/html; charset=utf-8", PAGE);
      if (path === "/browser-page.js") return send(200, "text/javascript", pageScript);
      if (path === "/jssip.js") return send(200, "text/javascript", jssip);
      if (path.startsWith("/sip.js/")) {
        const file = normalize(join(sipjsLib, path.slice("/sip.js/".length)));
        if (file.startsWith(sipjsLib + sep) && file.endsWith(".js") && existsSync(file))
          return send(200, "text/javascript", readFileSync(file, "utf8"));
      }
      send(404, "text/plain", "not found");
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: HOST, port: 0 }, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return new PageServer(server, `http://${HOST}:${port}/`);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------
// Chromium and the phones in it

/** The Chromium binary (Debian's `chromium`), or a thrown Error saying how to install it. */
export function requireChromium(): string {
  const bin = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
  if (!existsSync(bin))
    throw new Error(
      `Chromium is not installed (${bin}). Install it with \`apt-get install -y chromium\` ` +
        "(or point CHROMIUM_BIN at a Chromium binary); .ci/run installs it before `npm run test:interop`.",
    );
  return bin;
}

/** One WebSocket frame the page sent or received, with the SIP start line and CSeq read from it. */
export interface Frame extends SipHead {
  dir: "out" | "in";
  url: string;
  text: string;
}

function describeFrame(dir: "out" | "in", url: string, payload: string | Buffer): Frame {
  const text = typeof payload === "string" ? payload : payload.toString("utf8");
  const { values: _, ...head } = sipSummary(text);
  return {
    dir,
    url,
    ...head,
    text,
  };
}

/** "out INVITE", "in 180 INVITE", …: one line per frame. */
export const frameLine = (f: Frame) => `${f.dir} ${f.method ?? `${f.status} ${f.cseqMethod}`}`;

export type Lib = "sipjs" | "jssip";

export interface PageEvent {
  phone: string;
  call?: string;
  type: string;
  status?: number;
  cause?: string;
  originator?: string;
}

/** One headless Chromium with one page holding the SIP stacks. `close()` is safe any time. */
export class BrowserPhones {
  readonly frames: Frame[] = [];
  /** Every WebSocket the page opened (URL), and those that closed. */
  readonly sockets: string[] = [];
  readonly closedSockets: string[] = [];
  private readonly console: string[] = [];

  private constructor(
    private readonly browser: Browser,
    readonly page: Page,
  ) {
    page.on("console", (m) => {
      if (this.console.length < 500) this.console.push(`${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => this.console.push(`pageerror: ${e.message}`));
    page.on("websocket", (ws) => {
      this.sockets.push(ws.url());
      ws.on("framesent", (f) => this.frames.push(describeFrame("out", ws.url(), f.payload)));
      ws.on("framereceived", (f) => this.frames.push(describeFrame("in", ws.url(), f.payload)));
      ws.on("close", () => this.closedSockets.push(ws.url()));
    });
  }

  /** Chromium (headless) at `pageUrl`, trusting the certificate whose SPKI hash is `spki`. */
  static async launch(pageUrl: string, spki: string): Promise<BrowserPhones> {
    const executablePath = requireChromium();
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      timeout: 30_000,
      args: [
        // CI runs as root, where Chromium's sandbox cannot start.
        "--no-sandbox",
        // A container's small /dev/shm must not crash the renderer.
        "--disable-dev-shm-usage",
        // getUserMedia without a camera, a microphone or a permission prompt: SIP.js and JsSIP
        // both take the microphone before they offer SDP. The tests check signalling only.
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        // The WSS server's certificate is the test's own self-signed one (testCert()): trust that
        // key only, rather than --ignore-certificate-errors for every certificate.
        `--ignore-certificate-errors-spki-list=${spki}`,
        // ICE: host candidates on loopback too, and no mDNS names for them.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--allow-loopback-in-peer-connection",
      ],
    });
    try {
      const page = await browser.newPage();
      const phones = new BrowserPhones(browser, page);
      await page.goto(pageUrl, { timeout: 15_000 });
      await page.waitForFunction(
        () => (globalThis as unknown as { sipTest?: { ready: boolean } }).sipTest?.ready,
        {
          timeout: 15_000,
        },
      );
      return phones;
    } catch (err) {
      await browser.close().catch(() => undefined);
      throw err;
    }
  }

  /** A phone `name` of library `lib` on `wsUrl` as `aor`, connected (not yet registered). */
  async phone(name: string, lib: Lib, wsUrl: string, aor: string): Promise<void> {
    await this.page.evaluate(
      ([n, l, o]) =>
        (globalThis as unknown as SipTestWindow).sipTest.phone(n, l, o as { wsUrl: string; aor: string }),
      [name, lib, { wsUrl, aor }] as const,
    );
  }

  /** REGISTER and wait for its 200: the status. */
  register(name: string): Promise<number> {
    return this.page.evaluate((n) => (globalThis as unknown as SipTestWindow).sipTest.register(n), name);
  }

  unregister(name: string): Promise<number> {
    return this.page.evaluate((n) => (globalThis as unknown as SipTestWindow).sipTest.unregister(n), name);
  }

  /** Start a call: its id in the page (events carry it). */
  call(name: string, target: string, headers: string[] = []): Promise<string> {
    return this.page.evaluate(
      ([n, t, h]) => (globalThis as unknown as SipTestWindow).sipTest.call(n, t, h as string[]),
      [name, target, headers] as const,
    );
  }

  async cancel(call: string): Promise<void> {
    await this.page.evaluate((c) => (globalThis as unknown as SipTestWindow).sipTest.cancel(c), call);
  }

  async bye(call: string): Promise<void> {
    await this.page.evaluate((c) => (globalThis as unknown as SipTestWindow).sipTest.bye(c), call);
  }

  async stopPhone(name: string): Promise<void> {
    await this.page.evaluate((n) => (globalThis as unknown as SipTestWindow).sipTest.stop(n), name);
  }

  events(): Promise<PageEvent[]> {
    return this.page.evaluate(() => (globalThis as unknown as SipTestWindow).sipTest.events.slice());
  }

  /** Wait (bounded) for the page event of `call` (or phone) of this type; it, or a thrown Error with the events so far. */
  async waitEvent(
    match: { call?: string; phone?: string; type: string; status?: number },
    timeoutMs = 10_000,
  ): Promise<PageEvent> {
    try {
      await this.page.waitForFunction(
        (m) =>
          (globalThis as unknown as SipTestWindow).sipTest.events.some(
            (e) =>
              e.type === m.type &&
              (m.call === undefined || e.call === m.call) &&
              (m.phone === undefined || e.phone === m.phone) &&
              (m.status === undefined || e.status === m.status),
          ),
        match,
        { timeout: timeoutMs, polling: 20 },
      );
    } catch {
      throw new Error(
        `no page event ${JSON.stringify(match)} within ${timeoutMs} ms\n${await this.report()}`,
      );
    }
    const all = await this.events();
    return all.find(
      (e) =>
        e.type === match.type &&
        (match.call === undefined || e.call === match.call) &&
        (match.phone === undefined || e.phone === match.phone) &&
        (match.status === undefined || e.status === match.status),
    )!;
  }

  /** Wait (bounded, polled) until some frame matches; it, or a thrown Error with the frames so far. */
  async waitFrame(pred: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f) return f;
      if (Date.now() > end)
        throw new Error(`no frame ${what} within ${timeoutMs} ms\n${await this.report()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The frames of one call, one line each. */
  flow(callId: string): string[] {
    return this.frames.filter((f) => f.callId === callId).map(frameLine);
  }

  async report(): Promise<string> {
    const events = await this.events().catch(() => [] as PageEvent[]);
    return [
      `--- page events\n${events.map((e) => JSON.stringify(e)).join("\n")}`,
      `--- websocket frames (${this.sockets.join(", ")})\n${this.frames.map((f) => `${f.dir} ${f.start} [${f.cseqMethod}] ${f.callId}`).join("\n")}`,
      `--- page console\n${this.console.slice(-60).join("\n")}`,
    ].join("\n");
  }

  async close(): Promise<void> {
    await this.browser.close().catch(() => undefined);
  }
}

interface SipTestWindow {
  sipTest: {
    ready: boolean;
    events: PageEvent[];
    phone(name: string, lib: Lib, opts: { wsUrl: string; aor: string }): Promise<string>;
    register(name: string): Promise<number>;
    unregister(name: string): Promise<number>;
    call(name: string, target: string, headers: string[]): string;
    cancel(call: string): Promise<void>;
    bye(call: string): Promise<void>;
    stop(name: string): Promise<void>;
  };
}
