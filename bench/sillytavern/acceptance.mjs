// Drive every SillyTavern button that reaches `memagent serve`, in the real UI, and record what the
// UI sent. Not run in CI (CI has no SillyTavern); see bench/sillytavern/README.md.
//
//   node bench/sillytavern/acceptance.mjs --st /path/to/SillyTavern --puppeteer /path/with/puppeteer-core \
//        --out /tmp/st-run [--memagent .venv/bin/memagent] [--config config.ini]
//
// It starts `memagent serve` (embedded model, a fresh MEMAGENT_HOME), SillyTavern, a recording proxy
// between them and headless Chromium; writes report.json (each button: what the UI showed, the
// seconds it took, what memagent stored) and requests.json (the bodies SillyTavern sent, the
// fixtures tests/test_serve_clients.py replays).
import path from 'node:path';

import { Run, args, get, secondsSince, sleep, stopThenNewChats, waitFor } from '../clients/harness.mjs';

const ST = path.resolve(args.st ?? 'SillyTavern');
const ST_PORT = 18000;
const run = new Run({ agent: 'sakura', persona: 'sakura', out: 'st-run' });

async function main() {
    await run.serve();
    run.start('node', ['server.js', '--port', String(ST_PORT), '--listen', 'false', '--browserLaunchEnabled', 'false'],
        { cwd: ST }, 'sillytavern.log');
    await waitFor(async () => (await get(`http://127.0.0.1:${ST_PORT}/`)).status === 200, 120, 'SillyTavern');

    const { browser, page, toasts } = await run.browse(`http://127.0.0.1:${ST_PORT}/`,
        { ready: '#send_textarea', toast: '.toast' });

    const click = selector => page.$eval(selector, el => el.click());
    const setValue = (selector, value) => page.$eval(selector, (el, v) => {
        el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true }));
    }, value);
    const context = () => page.evaluate(() => {
        const c = window.SillyTavern.getContext();
        return { chat: c.chat.map(m => ({ name: m.name, user: m.is_user, text: m.mes, swipes: m.swipes?.length ?? 0 })),
                 online: c.onlineStatus };
    });
    const busy = () => page.$eval('#mes_stop', el => getComputedStyle(el).display !== 'none');
    const idle = async seconds => {
        await sleep(500);
        await waitFor(async () => !(await busy()), seconds, 'the reply');
        await sleep(1500);  // SillyTavern saves the chat, then takes clicks
    };

    async function button(name, action, { expect, until = null }) {
        run.step = name;
        const before = await run.stored();
        const startedAt = Date.now();
        const toastsBefore = toasts.length;
        await action();
        await idle(600);
        if (until) await waitFor(until, 600, `${name} to finish`);
        const seconds = secondsSince(startedAt);
        const after = await run.stored();
        const chat = (await context()).chat;
        const entry = { button: name, expect, seconds,
                        shown: chat.at(-1)?.text ?? null, swipes: chat.at(-1)?.swipes ?? 0,
                        toasts: toasts.slice(toastsBefore).map(t => t.text),
                        stored_before: before, stored_after: after };
        run.report.push(entry);
        console.log(JSON.stringify(entry));
        return entry;
    }

    // Connect the way the README says: Chat Completion, Custom (OpenAI-compatible), the agent as model.
    await page.select('#main_api', 'openai');
    await page.select('#chat_completion_source', 'custom');
    await setValue('#custom_api_url_text', `http://127.0.0.1:${run.proxyPort}/v1`);
    await setValue('#custom_model_id', run.agent);
    await page.$eval('#stream_toggle', el => { el.checked = true; el.dispatchEvent(new Event('change', { bubbles: true })); });
    await click('#api_button_openai');
    await waitFor(async () => (await context()).online !== 'no_connection', 60, 'the connection');

    const send = text => async () => { await setValue('#send_textarea', text); await click('#send_but'); };
    const option = id => () => click(`#${id}`);  // the entries of the chat's ☰ menu
    const newChat = async () => {
        run.step = 'new chat';
        for (let attempt = 0; attempt < 3; attempt++) {
            await idle(120);
            await option('option_start_new_chat')();
            // With a character card SillyTavern asks first; its own Assistant chat starts at once.
            const ok = await page.waitForFunction(() => [...document.querySelectorAll('dialog[open] .popup-button-ok')]
                .find(button => button.offsetParent !== null), { timeout: 3000 }).catch(() => null);
            if (ok) await ok.click();
            try {
                await waitFor(async () => (await context()).chat.every(message => !message.user), 10, 'the new chat');
                return;
            } catch { /* the click came while the last reply was being saved: press it again */ }
        }
        throw new Error('no new chat after three presses of "Start new chat"');
    };

    const toastsNow = () => toasts.length;
    const before = toastsNow();
    await button('Test Message', () => click('#test_api_button'),
        { expect: 'a reply in a toast', until: async () => toastsNow() > before });
    // SillyTavern's own "Assistant" chat, no character card: the README's advice (the agent is the persona).
    const question = 'うちの猫の名前、覚えてる？';
    await button('send', send('うちの猫の名前はミケだよ。'), { expect: 'a reply; the turn stored' });
    await button('send again', send('最近、朝はコーヒーじゃなくて紅茶にしてるの。'), { expect: 'a reply; the turn stored' });
    await button('swipe', () => page.$eval('.last_mes .swipe_right', el => el.click()),
        { expect: 'another reply; the turn retried, not added' });
    await button('Regenerate', option('option_regenerate'), { expect: 'another reply; the turn retried, not added' });
    await button('Continue', option('option_continue'), { expect: 'an error toast in plain words; nothing stored' });
    await button('Impersonate', option('option_impersonate'), { expect: 'an error toast in plain words; nothing stored' });
    await stopThenNewChats(run, { button, send, busy, stop: () => click('#mes_stop'), newChat }, {
        stopText: '今日は朝から雨で、ちょっと憂うつなんだ。長めに話を聞いてくれる？', afterStop: 'そういえば、週末は何してた？', question });

    await browser.close();
}

await run.main(main);
