package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite opsd.schema.json from the config types")

// TestJSONSchemaUpToDate: opsd.schema.json is what the config types generate, so a key added
// to or removed from the types without regenerating the schema fails here.
func TestJSONSchemaUpToDate(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	if *updateSchema {
		if err := os.WriteFile(SchemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(SchemaFile)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./config -run TestJSONSchemaUpToDate -update-schema)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with the config types: go test ./config -run TestJSONSchemaUpToDate -update-schema", SchemaFile)
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("opsd.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("opsd.schema.json")
	if err != nil {
		t.Fatalf("compile %s: %v", SchemaFile, err)
	}
	return s
}

// yamlDoc reads a YAML file as the JSON value a schema validator sees.
func yamlDoc(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestJSONSchemaAcceptsValidFiles: the annotated example, the compose sidecar's job file and
// every file under testdata/valid validate against the schema, and the example names it for
// editors on its first line.
func TestJSONSchemaAcceptsValidFiles(t *testing.T) {
	s := compileSchema(t)
	files := []string{"example.yaml", "../deploy/opsd/opsd.yaml"}
	more, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range append(files, more...) {
		if err := s.Validate(yamlDoc(t, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, _ := os.ReadFile("example.yaml")
	if !strings.HasPrefix(string(b), "# yaml-language-server: $schema=./"+SchemaFile+"\n") {
		t.Error("example.yaml does not point editors at the schema on its first line")
	}
}

// TestJSONSchemaRejectsUnknownKeysAndKinds: the invalid files whose error is an unknown key or
// kind are rejected by the schema too (it is as strict as the loader about the file's shape).
func TestJSONSchemaRejectsUnknownKeysAndKinds(t *testing.T) {
	s := compileSchema(t)
	wants, _ := filepath.Glob("testdata/invalid/*.want")
	n := 0
	for _, w := range wants {
		msg, _ := os.ReadFile(w)
		if !strings.Contains(string(msg), "unknown key") && !strings.Contains(string(msg), "unknown job kind") {
			continue
		}
		f := strings.TrimSuffix(w, ".want") + ".yaml"
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var v any
		if yaml.Unmarshal(b, &v) != nil {
			continue // not YAML at all: the loader's own error
		}
		n++
		if err := s.Validate(yamlDoc(t, f)); err == nil {
			t.Errorf("%s (%s) validates against the schema", f, strings.TrimSpace(string(msg)))
		}
	}
	if n == 0 {
		t.Fatal("no invalid file with an unknown key or kind found")
	}
	t.Logf("%d files with an unknown key or kind rejected", n)
}
