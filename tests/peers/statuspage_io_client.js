// npm `statuspage.io` (the Statuspage API v2 client) against the URL given as argv[2]:
// the client is built for a page id (https://<id>.statuspage.io) and pointed at probed with
// its own `setApiUrl`. Prints what the client returned, as JSON, for tests/statuspage_clients.rs;
// any request or parse error exits non-zero.
'use strict';
const { Statuspage } = require('statuspage.io');

async function main() {
  const base = process.argv[2];
  const sp = new Statuspage('probed');
  sp.setApiUrl(base);
  const out = {
    summary: await sp.api.getSummary(),
    status: await sp.api.getStatus(),
    components: await sp.api.getComponents(),
    incidents: await sp.api.incidents.getAll(),
    unresolved: await sp.api.incidents.getUnresolved(),
    maintenances: await sp.api.scheduledMaintenances.getAll(),
  };
  // axios hands back a string when the body is not JSON: that is a parse failure here.
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'object' || v === null) throw new Error(`${k}: not parsed as JSON: ${v}`);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
