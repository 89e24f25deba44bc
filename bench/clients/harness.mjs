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

function puppeteerFrom(folder) {
    return createRequire(path.join(folder ?? process.cwd(), 'package.json'))('puppeteer-core');
}

// The reply text of a chat completion, streamed (server-sent events) or not; an error's message.
function replyText(text) {
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
// The command line names the rest: --out, --memagent, --config, --puppeteer, --chromium.
export class Run {
    constructor({ agent, persona, out }) {
        Object.assign(this, { agent, persona, servePort: 18283, proxyPort: 18284 });
        this.out = path.resolve(args.out ?? out);
        this.memagent = args.memagent ?? 'memagent';
        this.config = args.config;  // e.g. a fake model's config for a dry run of the script
        this.chromium = args.chromium ?? '/usr/bin/chromium';
        this.puppeteer = puppeteerFrom(args.puppeteer);
        fs.mkdirSync(this.out, { recursive: true });
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

    // Headless Chromium on `url`, once `ready` (a selector) is on the page; `toasts` collects the
    // text of every element matching `toast` (a selector) that appears, with the step it came in.
    async browse(url, { ready, toast }) {
        const browser = await this.puppeteer.launch({ executablePath: this.chromium, headless: true,
            args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
        const page = await browser.newPage();
        await page.setViewport({ width: 1400, height: 1000 });
        const toasts = [];
        await page.exposeFunction('recordToast', text => toasts.push({ step: this.step, text }));
        await page.goto(url, { waitUntil: 'networkidle2', timeout: 120000 });
        await page.waitForSelector(ready, { timeout: 120000 });
        await page.evaluate(selector => new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(node => {
            if (node.matches?.(selector)) window.recordToast(node.innerText);
        }))).observe(document.body, { childList: true, subtree: true }), toast);
        return { browser, page, toasts };
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

export const secondsSince = startedAt => Math.round((Date.now() - startedAt) / 100) / 10;

// How every run ends, whatever the UI: Stop 1.5 s into a reply (and how long until the stopped turn
// is gone from memory, polled every 0.1 s), a message after it, then two new chats opening with the
// same question. `ui` is the UI's own: button(name, action, {expect}) → report entry, send(text) →
// action, busy() while a reply is written, stop() presses Stop, newChat().
export async function stopThenNewChats(run, ui, { stopText, afterStop, question }) {
    let stoppedAt = 0;
    const stop = await ui.button('Stop', async () => {
        await ui.send(stopText)();
        await waitFor(ui.busy, 30, 'the reply to start');
        await sleep(1500);
        await ui.stop();
        stoppedAt = Date.now();
    }, { expect: 'the turn undone; the agent free at once' });
    await waitFor(async () => (await run.storedTimes(stopText)) === 0, 30, 'the stopped turn to be undone');
    stop.undone_after_s = secondsSince(stoppedAt);
    await ui.button('send after Stop', ui.send(afterStop), { expect: 'answered without waiting for the stopped turn' });
    await ui.newChat();
    await ui.button('new chat, first message', ui.send(question), { expect: 'a new turn' });
    await ui.newChat();
    const again = await ui.button('another new chat, the same first message', ui.send(question),
        { expect: 'a new turn; the first chat\'s turn not deleted' });
    again.stored_question = await run.storedTimes(question);
}
