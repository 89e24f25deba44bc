// Drive the Open WebUI buttons that reach `memagent serve`, in the real UI, and record what its server
// sent, background tasks included. Not run in CI (CI has no Open WebUI); see bench/open_webui/README.md.
//
//   node bench/open_webui/acceptance.mjs --open-webui /path/to/venv/bin/open-webui \
//        --puppeteer /path/with/puppeteer-core --out /tmp/owui-run [--memagent .venv/bin/memagent] [--config config.ini]
//
// It starts `memagent serve` (embedded model, a fresh MEMAGENT_HOME), Open WebUI (a fresh DATA_DIR, no
// login, memagent as its only OpenAI connection, through a recording proxy) and headless Chromium;
// writes report.json (each button: what the UI showed, the seconds it took, what memagent stored) and
// requests.json (the bodies Open WebUI sent, the fixtures tests/test_serve_clients.py replays).
import path from 'node:path';

import { Run, args, get, secondsSince, sleep, stopThenNewChats, waitFor } from '../clients/harness.mjs';

const OPEN_WEBUI = args['open-webui'] ?? 'open-webui';
const UI_PORT = 18080;
const run = new Run({ agent: 'sam', persona: 'sam', out: 'owui-run' });

// Open WebUI as a user who installed it would run it against memagent: its defaults (title, tags and
// follow-up generation on), one OpenAI connection, no Ollama, no login; offline, as this machine is.
const uiEnv = () => ({
    ...process.env, DATA_DIR: path.join(run.out, 'open-webui-data'), WEBUI_AUTH: 'False',
    ENABLE_OLLAMA_API: 'False', OPENAI_API_BASE_URL: `http://127.0.0.1:${run.proxyPort}/v1`, OPENAI_API_KEY: 'none',
    OFFLINE_MODE: 'True', HF_HUB_OFFLINE: '1', BYPASS_EMBEDDING_AND_RETRIEVAL: 'True',
    ANONYMIZED_TELEMETRY: 'False', DO_NOT_TRACK: 'true', SCARF_NO_ANALYTICS: 'true', WEBUI_SECRET_KEY: 'acceptance-run',
});

// A recorded request in a word: the chat turn, or the background task its prompt names.
function describe(record) {
    const last = record.body?.messages?.at(-1)?.content;
    const task = typeof last === 'string' && last.startsWith('### Task:') ? last.split('\n')[1] : null;
    return task ? `task: ${task.slice(0, 50)}` : `${record.path} (${record.status})`;
}

async function main() {
    await run.serve();
    run.start(OPEN_WEBUI, ['serve', '--host', '127.0.0.1', '--port', String(UI_PORT)], { env: uiEnv() }, 'open-webui.log');
    await waitFor(async () => (await get(`http://127.0.0.1:${UI_PORT}/health`)).status === 200, 600, 'Open WebUI');

    const { browser, page, toasts } = await run.browse(`http://127.0.0.1:${UI_PORT}/`,
        { ready: '#chat-input', toast: '[data-sonner-toast]' });
    // The release notes open over a first visit.
    const letsGo = await page.waitForFunction(() => [...document.querySelectorAll('button')]
        .find(b => b.innerText.trim() === "Okay, Let's Go!"), { timeout: 10000 }).catch(() => null);
    if (letsGo) await letsGo.click();

    // A DOM click on the last (or first) button with that label: the reply's buttons show on hover.
    const press = (label, { last = true } = {}) => async () => {
        const clicked = await page.$$eval(`button[aria-label="${label}"]`, (buttons, last) => {
            const button = last ? buttons.at(-1) : buttons[0];
            button?.click();
            return Boolean(button);
        }, last);
        if (!clicked) throw new Error(`no button "${label}" on the page`);
    };
    const menuItem = text => async () => {
        const item = await page.waitForFunction(t => [...document.querySelectorAll('[role="menu"] button, [role="menuitem"]')]
            .find(b => b.innerText.trim() === t), { timeout: 10000 }, text);
        await item.evaluate(b => b.click());
    };
    const generating = async () => (await page.$('button[aria-label="Stop"]')) !== null;
    // Idle: no reply being generated and every request Open WebUI sent on (its background tasks
    // after a reply among them) answered, for two seconds running.
    const idle = async seconds => {
        await sleep(1000);
        let quietSince = Date.now();
        await waitFor(async () => {
            if (await generating() || run.requests.some(r => r.status === null)) quietSince = Date.now();
            return Date.now() - quietSince > 2000;
        }, seconds, 'the reply and its background tasks');
    };
    const shown = () => page.evaluate(() => {
        const replies = [...document.querySelectorAll('#messages-container .chat-assistant')];
        return replies.at(-1)?.innerText.trim() ?? null;
    });
    const title = () => page.evaluate(() => document.title);

    // `seconds`: from the click to the reply written out on screen; `all_done_s`: until Open WebUI's
    // background requests after it were answered too.
    async function button(name, action, { expect }) {
        run.step = name;
        const before = await run.stored();
        const startedAt = Date.now();
        const toastsBefore = toasts.length;
        const requestsBefore = run.requests.length;
        await action();
        await sleep(500);
        await waitFor(async () => !(await generating()), 600, 'the reply');
        const seconds = secondsSince(startedAt);
        await idle(600);
        const entry = { button: name, expect, seconds, all_done_s: secondsSince(startedAt),
                        shown: await shown(), title: await title(),
                        requests: run.requests.slice(requestsBefore).map(describe),
                        toasts: toasts.slice(toastsBefore).map(t => t.text),
                        stored_before: before, stored_after: await run.stored() };
        run.report.push(entry);
        console.log(JSON.stringify(entry));
        return entry;
    }

    const send = text => async () => {
        await page.click('#chat-input');
        await page.keyboard.type(text);
        await page.keyboard.press('Enter');
    };
    const editLastUserMessage = text => async () => {
        await page.$$eval('.user-message button[aria-label="Edit"]', buttons => buttons.at(-1).click());
        const area = await page.waitForSelector('textarea[id^="message-edit-"]', { timeout: 10000 });
        await area.evaluate((el, value) => { el.value = value; el.dispatchEvent(new Event('input', { bubbles: true })); }, text);
        await page.$eval('#confirm-edit-message-button', button => button.click());
    };
    const newChat = async () => {
        run.step = 'new chat';
        await idle(120);
        await press('New Chat', { last: false })();
        await waitFor(async () => (await page.$$('#messages-container .chat-assistant')).length === 0, 30, 'the new chat');
    };

    const question = 'Do you remember what my cat is called?';
    await button('send', send('My cat is called Miso, she is a tabby.'),
        { expect: 'a reply; the turn stored; title, tags and follow-ups store nothing' });
    await button('send again', send('These days I drink black tea in the morning instead of coffee.'),
        { expect: 'a reply; the turn stored' });
    await button('Regenerate → Try Again', async () => { await press('Regenerate')(); await menuItem('Try Again')(); },
        { expect: 'another reply; the turn retried, not added' });
    await button('Regenerate → Add Details', async () => { await press('Regenerate')(); await menuItem('Add Details')(); },
        { expect: 'another reply, as the UI asks; nothing stored twice' });
    await button('Continue Response', press('Continue Response'), { expect: 'an error in plain words; nothing stored' });
    await button('edit and send', editLastUserMessage('These days I drink green tea in the morning.'),
        { expect: 'a new turn; nothing deleted' });
    await stopThenNewChats(run, { button, send, busy: generating, stop: press('Stop'), newChat }, {
        stopText: 'It has been raining all day and I feel a bit low. Can you talk with me for a while?',
        afterStop: 'By the way, what did you do at the weekend?', question });
    await page.screenshot({ path: path.join(run.out, 'last.png') });
    await browser.close();
}

await run.main(main);
