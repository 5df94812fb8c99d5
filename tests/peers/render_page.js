// Renders a page in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) at phone and desktop sizes, and prints what a person would see as JSON:
// { "<viewport>": { status, title, lang, text, overflow, scrollWidth, innerWidth, headings,
//   bars, components: [{ name, state, bars, minBarWidth, barsRight, sparklines, lastBarTitle }],
//   overflowing, componentsTop, innerHeight, background, axe: [violations], keyboard:
//   { tabs, label, popover } }, ... }, plus "dark" (the desktop size with
//   prefers-color-scheme: dark: its computed background and axe's violations).
// axe-core (npm) is injected into each page (with the page's CSP bypassed: the page itself
// allows no script) and run with its default rules.
//
// usage: node tests/peers/render_page.js URL [SCREENSHOT_PREFIX]
//   with SCREENSHOT_PREFIX, a full-page PNG per viewport: PREFIX-<viewport>.png
// Exits 3 (with a message saying what to install) when playwright-core or chromium is
// missing: the test that runs this fails on it, it never skips.
'use strict';
const fs = require('fs');

const [url, shots] = process.argv.slice(2);
if (!url) {
  console.error('usage: node render_page.js URL [SCREENSHOT_PREFIX]');
  process.exit(2);
}
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(
    'playwright-core is missing from tests/peers/node_modules: run deploy/test.sh ' +
      '(npm install --no-save --prefix tests/peers socket.io@4 playwright-core@1): ' + e.message,
  );
  process.exit(3);
}
let axeSource;
try {
  axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
} catch (e) {
  console.error(
    'axe-core is missing from tests/peers/node_modules: run deploy/test.sh ' +
      '(npm install --no-save --prefix tests/peers socket.io@4 playwright-core@1 axe-core@4): ' +
      e.message,
  );
  process.exit(3);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) {
  console.error(`${executablePath} is missing: run deploy/test.sh (apt-get install chromium)`);
  process.exit(3);
}

const VIEWPORTS = {
  narrow: { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  desktop: { viewport: { width: 1280, height: 900 }, isMobile: false, deviceScaleFactor: 1 },
  dark: { viewport: { width: 1280, height: 900 }, isMobile: false, deviceScaleFactor: 1, colorScheme: 'dark' },
};

// axe-core's violations on the page as it is now: [{ id, impact, nodes, example }].
async function axe(page) {
  await page.addScriptTag({ content: axeSource });
  return page.evaluate(async () => {
    const r = await window.axe.run(document);
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.length,
      example: v.nodes.slice(0, 3).map((n) => n.failureSummary + ' @ ' + n.target.join(' ')),
    }));
  });
}

// Tabs from the top until a day of an uptime bar has focus (at most 60 presses): how many
// presses, its text, and whether its popover shows.
async function tabToDay(page) {
  for (let tabs = 1; tabs <= 60; tabs++) {
    await page.keyboard.press('Tab');
    const day = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || !el.matches('.bars i')) return null;
      const after = getComputedStyle(el, '::after');
      return {
        label: el.getAttribute('aria-label'),
        popover: after.content !== 'none' && after.display !== 'none' && after.content.includes(':'),
      };
    });
    if (day) return { tabs, ...day };
  }
  return { tabs: null };
}

(async () => {
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  const out = {};
  try {
    for (const [name, opts] of Object.entries(VIEWPORTS)) {
      const ctx = await browser.newContext({ ...opts, bypassCSP: true });
      const page = await ctx.newPage();
      const t0 = Date.now();
      const resp = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
      const loadMs = Date.now() - t0;
      const seen = await page.evaluate(() => {
        const vw = window.innerWidth;
        const rect = (el) => el.getBoundingClientRect();
        return {
          title: document.title,
          lang: document.documentElement.lang,
          text: document.body.innerText,
          overflow: document.documentElement.scrollWidth > window.innerWidth,
          scrollWidth: document.documentElement.scrollWidth,
          innerWidth: vw,
          headings: [...document.querySelectorAll('h1, h2, h3, h4')].map((h) => ({
            level: Number(h.tagName[1]),
            text: h.innerText.trim(),
          })),
          bars: document.querySelectorAll('.bars i').length,
          componentsTop: rect(document.getElementById('h-comp')).top,
          innerHeight: window.innerHeight,
          background: getComputedStyle(document.body).backgroundColor,
          color: getComputedStyle(document.body).color,
          feeds: [...document.querySelectorAll('link[rel=alternate]')].map((l) => `${l.type} ${l.href}`),
          components: [...document.querySelectorAll('.comp')].map((c) => {
            const bars = [...c.querySelectorAll('.bars i')];
            return {
              name: c.querySelector('.cname') && c.querySelector('.cname').innerText.trim(),
              state: c.querySelector('.st') && c.querySelector('.st').innerText.trim(),
              bars: bars.length,
              minBarWidth: bars.length ? Math.min(...bars.map((b) => rect(b).width)) : 0,
              barsRight: bars.length ? Math.max(...bars.map((b) => rect(b).right)) : 0,
              sparklines: c.querySelectorAll('svg.spark').length,
              lastBarTitle: bars.length ? bars[bars.length - 1].getAttribute('aria-label') : null,
            };
          }),
          // Anything reaching past the viewport's right edge, to say what overflows.
          overflowing: [...document.querySelectorAll('body *')]
            .filter((el) => rect(el).right > vw + 0.5)
            .slice(0, 10)
            .map((el) => `${el.tagName.toLowerCase()}.${el.className} right=${rect(el).right}`),
        };
      });
      seen.status = resp ? resp.status() : null;
      seen.keyboard = await tabToDay(page);
      seen.axe = await axe(page);
      seen.loadMs = loadMs;
      if (shots) {
        await page.screenshot({ path: `${shots}-${name}.png`, fullPage: true });
      }
      out[name] = seen;
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
  console.error(`render_page.js: ${e.stack || e}`);
  process.exit(1);
});
