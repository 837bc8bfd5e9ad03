package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// SchemaFile is the JSON Schema of the job file, beside this package's sources; editors find it
// through the `# yaml-language-server: $schema=...` line of config/example.yaml.
const SchemaFile = "opsd.schema.json"

var secretType = reflect.TypeOf(Secret(""))

// JSONSchema returns the JSON Schema (draft-07) of the job file, generated from the Config types
// and their yaml tags: every mapping is closed (unknown keys are errors, as Load reports them),
// each job's keys are its kind's plus the common ones, and every scalar may also be a ${VAR}
// reference. It checks shape, not meaning (Validate checks schedules, ranges and references).
func JSONSchema() ([]byte, error) {
	g := &schemaGen{defs: map[string]any{
		"env":      map[string]any{"type": "string", "pattern": `\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}`, "description": "an environment variable: ${VAR} or ${VAR:-default}"},
		"string":   map[string]any{"type": "string"},
		"boolean":  anyOf(map[string]any{"type": "boolean"}, ref("env")),
		"integer":  anyOf(map[string]any{"type": "integer"}, ref("env")),
		"number":   anyOf(map[string]any{"type": "number"}, ref("env")),
		"duration": anyOf(map[string]any{"type": "string", "pattern": `^\s*([0-9]+[dw]|0|([0-9]*\.?[0-9]+(ns|us|µs|ms|s|m|h))+)\s*$`}, map[string]any{"const": 0}, ref("env")),
		"bytesize": anyOf(map[string]any{"type": "integer", "minimum": 0}, map[string]any{"type": "string", "pattern": `^\s*[0-9]+(\.[0-9]+)?\s*[A-Za-z]*\s*$`}, ref("env")),
	}}
	root := g.object(reflect.TypeOf(Config{}))
	root["$schema"] = "http://json-schema.org/draft-07/schema#"
	root["title"] = "opsd job file"
	root["description"] = "opsd's job file (config/example.yaml documents every key). Generated from the config package's types by TestJSONSchemaUpToDate."
	root["definitions"] = g.defs
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal schema: %w", err)
	}
	return append(b, '\n'), nil
}

type schemaGen struct {
	defs map[string]any
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/definitions/" + name} }

func anyOf(s ...map[string]any) map[string]any { return map[string]any{"anyOf": s} }

// of returns the schema of a field of type t.
func (g *schemaGen) of(t reflect.Type) map[string]any {
	switch t {
	case durationType:
		return ref("duration")
	case byteSizeType:
		return ref("bytesize")
	case secretType:
		return ref("string")
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem())
	case reflect.String:
		return ref("string")
	case reflect.Bool:
		return ref("boolean")
	case reflect.Int, reflect.Int64:
		return ref("integer")
	case reflect.Float64:
		return ref("number")
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // a placeholder against recursion
			if t == jobType {
				g.defs[name] = g.job()
			} else {
				g.defs[name] = g.object(t)
			}
		}
		return ref(name)
	}
	panic(fmt.Sprintf("config schema: no schema for %s", t))
}

// properties returns the schemas of t's yaml keys.
func (g *schemaGen) properties(t reflect.Type) map[string]any {
	props := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		props[tag] = g.of(f.Type)
	}
	return props
}

// object is a closed mapping of t's yaml keys.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	return map[string]any{"type": "object", "properties": g.properties(t), "additionalProperties": false}
}

// job is a job entry: the common keys, and for each kind the common keys plus its settings'.
func (g *schemaGen) job() map[string]any {
	common := g.properties(jobType)
	common["kind"] = map[string]any{"enum": Kinds(), "description": "the job's kind; the other keys depend on it"}
	var branches []any
	for i := 0; i < jobType.NumField(); i++ {
		f := jobType.Field(i)
		kind := f.Tag.Get("kind")
		if kind == "" {
			continue
		}
		props := g.properties(f.Type.Elem())
		for k, v := range common {
			props[k] = v
		}
		branches = append(branches, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"kind": map[string]any{"const": kind}}, "required": []string{"kind"}},
			"then": map[string]any{"properties": props, "additionalProperties": false},
		})
	}
	return map[string]any{"type": "object", "properties": common, "required": []string{"name", "kind"}, "allOf": branches}
}
