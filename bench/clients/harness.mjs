// What the acceptance runs of real chat UIs share: `memagent serve` in a fresh MEMAGENT_HOME, a
// recording proxy between the UI's server and memagent, child processes and their logs, polling.
// Used by bench/sillytavern/acceptance.mjs and bench/open_webui/acceptance.mjs.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

// `--name value` pairs of the command line.
export const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) => (
    arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

export async function waitFor(check, seconds, what) {
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
        try { if (await check()) return; } catch { /* not up yet */ }
        await sleep(100);
    }
    throw new Error(`timed out after ${seconds}s waiting for ${what}`);
}

export const get = url => new Promise((resolve, reject) => http.get(url, res => {
    let data = ''; res.on('data', c => data += c); res.on('end', () => resolve({ status: res.statusCode, data }));
}).on('error', reject));

export function puppeteerFrom(folder) {
    return createRequire(path.join(folder ?? process.cwd(), 'package.json'))('puppeteer-core');
}

// The reply text of a chat completion, streamed (server-sent events) or not; an error's message.
export function replyText(text) {
    try {
        if (!text.startsWith('data:')) {
            const parsed = JSON.parse(text);
            return parsed.error ? { error: parsed.error.message } : parsed.choices?.[0]?.message?.content ?? null;
        }
        return text.split('\n').filter(line => line.startsWith('data: ') && line !== 'data: [DONE]')
            .map(line => JSON.parse(line.slice(6))).map(event => event.error ? `[error: ${event.error.message}]`
                : event.choices?.[0]?.delta?.content ?? '').join('');
    } catch {
        return text.slice(0, 500);
    }
}

// One run: memagent serve with one agent, a recording proxy in front of it, the UI's processes.
export class Run {
    constructor({ out, memagent, agent, persona, servePort, proxyPort, config }) {
        Object.assign(this, { out, memagent, agent, persona, servePort, proxyPort, config });
        fs.mkdirSync(out, { recursive: true });
        this.home = fs.mkdtempSync(path.join(os.tmpdir(), 'memagent-ui-'));
        this.env = { ...process.env, MEMAGENT_HOME: this.home };
        this.children = [];
        this.requests = [];  // every POST the UI's server sent on, labelled with `step`, and the reply
        this.report = [];
        this.step = 'setup';
    }

    start(command, argv, options, logName) {
        const log = fs.openSync(path.join(this.out, logName), 'w');
        const child = spawn(command, argv, { ...options, stdio: ['ignore', log, log] });
        this.children.push(child);
        return child;
    }

    async serve() {
        // e.g. a fake model's config for a dry run of the script
        if (this.config) fs.copyFileSync(this.config, path.join(this.home, 'config.ini'));
        execFileSync(this.memagent, ['agents', 'create', this.agent, '--persona', this.persona],
            { env: this.env, stdio: 'inherit' });
        this.start(this.memagent, ['serve', '--port', String(this.servePort)], { env: this.env }, 'serve.log');
        await waitFor(async () => (await get(`http://127.0.0.1:${this.servePort}/v1/models`)).status === 200, 600,
            'memagent serve');
        this.proxy();
    }

    async stored() {
        const res = await get(`http://127.0.0.1:${this.servePort}/v1/agents/${this.agent}/memory`);
        return JSON.parse(res.data).stats;
    }

    async storedTimes(text) {
        const query = encodeURIComponent(text);
        const res = await get(`http://127.0.0.1:${this.servePort}/v1/agents/${this.agent}/memory/search` +
            `?query=${query}&kind=recall&literal=true&limit=50`);
        return JSON.parse(res.data).hits.filter(hit => hit.text === text || hit.content === text).length;
    }

    // Records each body the UI's server sends on, labelled with the step that caused it.
    proxy() {
        http.createServer((req, res) => {
            const chunks = [];
            req.on('data', c => chunks.push(c));
            req.on('end', () => {
                const body = Buffer.concat(chunks);
                const record = req.method === 'POST'
                    ? { step: this.step, path: req.url, body: JSON.parse(body.toString() || 'null'), status: null, reply: null }
                    : null;
                if (record) this.requests.push(record);
                const upstream = http.request({ host: '127.0.0.1', port: this.servePort, path: req.url,
                    method: req.method, headers: { ...req.headers, host: `127.0.0.1:${this.servePort}` } }, up => {
                    res.writeHead(up.statusCode, up.headers);
                    const answer = [];
                    up.on('data', chunk => { answer.push(chunk); res.write(chunk); });
                    up.on('end', () => {
                        res.end();
                        if (record) Object.assign(record, { status: up.statusCode,
                                                            reply: replyText(Buffer.concat(answer).toString()) });
                    });
                });
                upstream.on('error', () => { res.writeHead(502); res.end(); });
                res.on('close', () => {  // the UI's Stop reaches memagent as a dropped connection
                    upstream.destroy();
                    if (record && record.status === null) record.status = 'dropped by the client';
                });
                upstream.end(body);
            });
        }).on('error', error => { console.error(`proxy: ${error.message}`); process.exit(1); })
          .listen(this.proxyPort, '127.0.0.1');
    }

    save() {
        fs.writeFileSync(path.join(this.out, 'report.json'), JSON.stringify(this.report, null, 2));
        fs.writeFileSync(path.join(this.out, 'requests.json'), JSON.stringify(this.requests, null, 2));
    }

    // Runs `main`, saves what was recorded whatever happens, stops the children, exits.
    async main(body) {
        try {
            await body();
        } catch (error) {
            console.error(`${this.step}: ${error.message}`);
            process.exitCode = 1;
        } finally {
            this.save();
            this.children.forEach(child => child.kill('SIGTERM'));
            process.exit();  // the proxy's listener would keep node alive
        }
    }
}
