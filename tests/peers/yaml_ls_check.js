// Shows a JSON Schema to yaml-language-server (npm), the engine of VS Code's YAML extension
// and of Neovim's and Helix's YAML support, as an editor would: tests/schema.rs runs it on
// `probectl schema`.
//
// Usage: node yaml_ls_check.js SCHEMA.json < cases.json
// cases.json: [{"name", "text", "complete_at": [line, character] (optional, 0-based)}]
// Prints [{"name", "diagnostics": ["line:col message"], "completions": ["label"]}].

const fs = require('fs');
const path = require('path');
const { getLanguageService } = require('yaml-language-server/lib/umd/languageservice/yamlLanguageService');
const { TextDocument } = require('vscode-languageserver-textdocument');

async function main() {
  const schemaPath = path.resolve(process.argv[2]);
  const schemaText = fs.readFileSync(schemaPath, 'utf8');
  const uri = 'file://' + schemaPath;
  const ls = getLanguageService({
    schemaRequestService: async (u) => {
      if (u !== uri) throw new Error('unexpected schema request: ' + u);
      return schemaText;
    },
    workspaceContext: { resolveRelativePath: (p) => p },
  });
  ls.configure({
    validate: true,
    completion: true,
    hover: true,
    schemas: [{ uri, fileMatch: ['*.yaml'] }],
  });
  const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = [];
  for (const c of cases) {
    const doc = TextDocument.create('file:///case/' + c.name + '.yaml', 'yaml', 1, c.text);
    const diags = await ls.doValidation(doc, false);
    const result = {
      name: c.name,
      diagnostics: diags.map((d) => `${d.range.start.line + 1}:${d.range.start.character + 1} ${d.message}`),
      completions: [],
    };
    if (c.complete_at) {
      const [line, character] = c.complete_at;
      const list = await ls.doComplete(doc, { line, character }, false);
      result.completions = list.items.map((i) => i.label);
    }
    out.push(result);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
