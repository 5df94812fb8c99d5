"""Validates YAML files against a JSON Schema with python-jsonschema (PyPI `jsonschema`),
as an editor's language server would: tests/schema.rs runs it on `probectl schema`.

Usage: validate_schema.py SCHEMA.json FILE.yaml...
Prints one JSON line per file: {"file", "ok", "errors": ["path: message", ...]}. Exit 2 when
the schema itself is not a valid draft 2020-12 schema.

YAML is read as probed reads it (YAML 1.2 core, as serde_yaml): `yes`/`no`/`on`/`off` are
strings and timestamps stay strings, unlike PyYAML's YAML 1.1 defaults.
"""

import json
import re
import sys

import jsonschema
import yaml


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader without the YAML 1.1 resolvers serde_yaml does not have."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        print(json.dumps({"schema_error": str(e)}))
        sys.exit(2)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sys.argv[2:]:
        try:
            with open(path) as f:
                doc = yaml.load(f, Loader=Yaml12Loader)
        except yaml.YAMLError as e:
            print(json.dumps({"file": path, "ok": False, "errors": [f"not YAML: {e}"]}))
            continue
        errors = []
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            at = "/".join(str(p) for p in e.absolute_path) or "(top)"
            errors.append(f"{at}: {e.message[:300]}")
        print(json.dumps({"file": path, "ok": not errors, "errors": errors}))


if __name__ == "__main__":
    main()
