/**
 * A Sonos stand-in: an HTTP server answering the UPnP SOAP actions the `sonos` package
 * sends (AVTransport, RenderingControl, ZoneGroupTopology, the device description), each
 * response element keeping its xmlns:u attribute as a real speaker's does.
 * SetAVTransportURI fetches the URL like a speaker (HEAD, ranged GETs) and faults when that
 * fails; Play and Seek sound after a configurable start delay; GetPositionInfo answers in
 * whole seconds, as Sonos does. A double can be put in another double's Sonos group: it
 * then names that one as coordinator and refuses transport commands itself.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { fetchLikeADevice, type Fetched } from './device-fetch.js';
import { Playhead } from './playhead.js';

const ENVELOPE = (body: string) =>
  `<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>${body}</s:Body></s:Envelope>`;

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

function hms(seconds: number): string {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

export interface SoapCall {
  service: string;
  action: string;
  args: Record<string, string>;
  at: number;
}

export class SonosDouble {
  readonly playhead: Playhead;
  readonly calls: SoapCall[] = [];
  readonly fetches: Fetched[] = [];
  readonly fetchErrors: string[] = [];
  volume = 20;
  muted = false;
  port = 0;
  readonly uuid: string;
  /** Set: this speaker is a member of that double's Sonos group. */
  coordinator?: SonosDouble;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    startDelayMs: number,
    readonly roomName = 'Study',
  ) {
    this.playhead = new Playhead(startDelayMs);
    this.uuid = `RINCON_${Math.random().toString(16).slice(2, 14).toUpperCase()}01400`;
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (server.address() as { port: number }).port;
    return this;
  }

  get location(): string {
    return `http://127.0.0.1:${this.port}/xml/device_description.xml`;
  }

  /** Unplugged: nothing answers any more. */
  vanish(): void {
    this.playhead.stop();
    this.server?.close();
    for (const s of this.sockets) s.destroy();
    this.server = undefined;
  }

  async stop(): Promise<void> {
    this.vanish();
  }

  count(action: string): number {
    return this.calls.filter((c) => c.action === action).length;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'GET' && req.url === '/xml/device_description.xml') {
      res.writeHead(200, { 'content-type': 'text/xml' });
      return void res.end(
        `<?xml version="1.0" encoding="utf-8"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:ZonePlayer:1</deviceType><friendlyName>127.0.0.1 - Sonos One</friendlyName><roomName>${escape(this.roomName)}</roomName><UDN>uuid:${this.uuid}</UDN></device></root>`,
      );
    }
    const soapAction = /#(\w+)"?$/.exec(String(req.headers.soapaction ?? ''))?.[1];
    const service = /service:(\w+):1#/.exec(String(req.headers.soapaction ?? ''))?.[1];
    if (req.method !== 'POST' || !soapAction || !service) {
      res.writeHead(404);
      return void res.end();
    }
    const args: Record<string, string> = {};
    const inner = new RegExp(`<u:${soapAction}[^>]*>([\\s\\S]*)</u:${soapAction}>`).exec(body)?.[1] ?? '';
    for (const m of inner.matchAll(/<(\w+)>([\s\S]*?)<\/\1>/g)) args[m[1]] = unescape(m[2]);
    this.calls.push({ service, action: soapAction, args, at: Date.now() });
    try {
      const out = await this.act(service, soapAction, args);
      const fields = Object.entries(out)
        .map(([k, v]) => `<${k}>${escape(String(v))}</${k}>`)
        .join('');
      res.writeHead(200, { 'content-type': 'text/xml; charset="utf-8"' });
      res.end(ENVELOPE(`<u:${soapAction}Response xmlns:u="urn:schemas-upnp-org:service:${service}:1">${fields}</u:${soapAction}Response>`));
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/xml; charset="utf-8"' });
      res.end(ENVELOPE(`<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${(err as Error).message}</errorCode></UPnPError></detail></s:Fault>`));
    }
  }

  private async act(service: string, action: string, args: Record<string, string>): Promise<Record<string, string | number>> {
    const p = this.playhead;
    const transport = ['SetAVTransportURI', 'Play', 'Pause', 'Stop', 'Seek'];
    // 800: a grouped speaker is not its group's coordinator (what a real one answers).
    if (this.coordinator && transport.includes(action)) throw new Error('800');
    switch (`${service}#${action}`) {
      case 'AVTransport#SetAVTransportURI': {
        try {
          this.fetches.push(await fetchLikeADevice(args.CurrentURI));
        } catch (err) {
          this.fetchErrors.push(`${args.CurrentURI}: ${(err as Error).message}`);
          throw new Error('714');
        }
        p.load(args.CurrentURI, 0);
        return {};
      }
      case 'AVTransport#Play':
        p.play();
        return {};
      case 'AVTransport#Pause':
        p.pause();
        return {};
      case 'AVTransport#Stop':
        p.stop();
        return {};
      case 'AVTransport#Seek': {
        if (args.Unit !== 'REL_TIME') throw new Error('710');
        const m = /^(\d+):(\d{2}):(\d{2})$/.exec(args.Target);
        if (!m) throw new Error('711');
        p.seek((Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1000);
        return {};
      }
      case 'AVTransport#GetTransportInfo':
        return { CurrentTransportState: { idle: 'STOPPED', paused: 'PAUSED_PLAYBACK', buffering: 'TRANSITIONING', playing: 'PLAYING' }[p.state], CurrentTransportStatus: 'OK', CurrentSpeed: 1 };
      case 'AVTransport#GetPositionInfo':
        return { Track: 1, TrackDuration: '0:00:00', TrackMetaData: 'NOT_IMPLEMENTED', TrackURI: p.url ?? '', RelTime: hms(p.positionMs() / 1000), AbsTime: 'NOT_IMPLEMENTED', RelCount: 2147483647, AbsCount: 2147483647 };
      case 'RenderingControl#SetVolume':
        this.volume = Number(args.DesiredVolume);
        return {};
      case 'RenderingControl#GetVolume':
        return { CurrentVolume: this.volume };
      case 'RenderingControl#SetMute':
        this.muted = args.DesiredMute === '1';
        return {};
      case 'RenderingControl#GetMute':
        return { CurrentMute: this.muted ? 1 : 0 };
      case 'ZoneGroupTopology#GetZoneGroupState': {
        const coordinator = this.coordinator ?? this;
        const members = [coordinator, ...(this.coordinator ? [this] : [])]
          .map((d) => `<ZoneGroupMember UUID="${d.uuid}" Location="${d.location}" ZoneName="${escape(d.roomName)}"/>`)
          .join('');
        return { ZoneGroupState: `<ZoneGroupState><ZoneGroups><ZoneGroup Coordinator="${coordinator.uuid}" ID="${coordinator.uuid}:1">${members}</ZoneGroup></ZoneGroups></ZoneGroupState>` };
      }
      default:
        throw new Error('401');
    }
  }
}
