package main

import (
	"errors"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestArchitectureDoc keeps docs/architecture.md true: its Mermaid
// package graph names every package of the module and exactly the imports
// between them (non-test files, as `go list -f '{{.Imports}}'` reports
// them), no package of the graph's "endpoints" subgraph imports another
// (the rule the page states), every package has its paragraph (its path
// in backticks outside the graph), every repository path the page names in
// backticks exists, and the README links the page.
func TestArchitectureDoc(t *testing.T) {
	t.Parallel()
	const root = "../.."
	raw, err := os.ReadFile(filepath.Join(root, "docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)

	pkgs, imports := modulePackages(t, root)
	nodes, edges, groups, prose := docGraph(t, doc)

	for _, p := range pkgs {
		if !slices.Contains(nodes, p) {
			t.Errorf("docs/architecture.md: the package graph lacks %s; add %s[%q] and its imports", p, mermaidID(p), p)
		}
		if !strings.Contains(prose, "`"+p+"`") {
			t.Errorf("docs/architecture.md: no paragraph names `%s` (say what its one job is)", p)
		}
	}
	for _, n := range nodes {
		if !slices.Contains(pkgs, n) {
			t.Errorf("docs/architecture.md: the package graph names %s, which is not a package of the module", n)
		}
	}
	for _, e := range imports {
		if !slices.Contains(edges, e) {
			from, to, _ := strings.Cut(e, " ")
			t.Errorf("docs/architecture.md: %s imports %s, but the graph lacks `%s --> %s`", from, to, mermaidID(from), mermaidID(to))
		}
	}
	for _, e := range edges {
		if !slices.Contains(imports, e) {
			from, to, _ := strings.Cut(e, " ")
			t.Errorf("docs/architecture.md: the graph says %s imports %s, which it does not", from, to)
		}
	}

	// The rule the page states: no endpoint package imports another.
	var endpoints []string
	for p, g := range groups {
		if g == "endpoints" {
			endpoints = append(endpoints, p)
		}
	}
	if len(endpoints) < 2 {
		t.Errorf("docs/architecture.md: the graph's \"endpoints\" subgraph holds %v", endpoints)
	}
	for _, e := range imports {
		from, to, _ := strings.Cut(e, " ")
		if slices.Contains(endpoints, from) && slices.Contains(endpoints, to) {
			t.Errorf("endpoint package %s imports endpoint package %s: share the code through a package below both instead", from, to)
		}
	}

	for _, m := range backticked.FindAllStringSubmatch(prose, -1) {
		p := m[1]
		if !repoPath.MatchString(p) {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("docs/architecture.md names `%s`, which does not exist", p)
		}
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "(docs/architecture.md)") {
		t.Error("README does not link docs/architecture.md")
	}
}

// repoPath matches what looks like a path in this repository.
var repoPath = regexp.MustCompile(`^(cmd|internal|resource|examples|migrations|docs)(/[A-Za-z0-9_.\-]+)*$`)

// modulePackages returns the module's packages (paths relative to the
// module, as the doc writes them) and their imports of each other as
// "from to", from the non-test Go files of every directory.
func modulePackages(t *testing.T, root string) (pkgs, imports []string) {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no module line")
	}
	module := string(m[1])
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "node_modules" || name == "vendor") {
			return filepath.SkipDir
		}
		bp, err := build.Default.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		pkgs = append(pkgs, rel)
		for _, imp := range bp.Imports {
			if dep, ok := strings.CutPrefix(imp, module+"/"); ok {
				imports = append(imports, rel+" "+dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 || len(imports) < 10 {
		t.Fatalf("found only %d packages and %d imports under %s", len(pkgs), len(imports), root)
	}
	return pkgs, imports
}

var (
	mermaidNode = regexp.MustCompile(`^\s*(\w+)\["([^"]+)"\]\s*$`)
	mermaidEdge = regexp.MustCompile(`^\s*(\w+)\s*-->\s*(\w+)\s*$`)
)

// docGraph parses the doc's Mermaid flowchart: nodes are `id["path"]`,
// one per line; edges `a --> b`, one per line. groups maps a package to
// the id of the subgraph it is declared in. prose is the doc without its
// Mermaid blocks.
func docGraph(t *testing.T, doc string) (nodes, edges []string, groups map[string]string, prose string) {
	t.Helper()
	var text []string
	ids := map[string]string{}
	groups = map[string]string{}
	group := ""
	var rawEdges [][2]string
	inBlock, flowchart, graphs := false, false, 0
	for i, line := range strings.Split(doc, "\n") {
		switch {
		case !inBlock && strings.TrimSpace(line) == "```mermaid":
			inBlock = true
			continue
		case inBlock && strings.TrimSpace(line) == "```":
			inBlock, flowchart = false, false
			continue
		case !inBlock:
			text = append(text, line)
			continue
		case strings.HasPrefix(strings.TrimSpace(line), "flowchart") || strings.HasPrefix(strings.TrimSpace(line), "graph "):
			flowchart = true
			graphs++
			continue
		case !flowchart:
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "subgraph" || f[0] == "end" || f[0] == "direction") {
			switch {
			case f[0] == "subgraph" && len(f) > 1:
				group, _, _ = strings.Cut(f[1], "[")
			case f[0] == "end":
				group = ""
			}
			continue
		}
		if m := mermaidNode.FindStringSubmatch(line); m != nil {
			if _, dup := ids[m[1]]; dup {
				t.Errorf("docs/architecture.md:%d: node %s declared twice", i+1, m[1])
			}
			ids[m[1]] = m[2]
			if slices.Contains(nodes, m[2]) {
				t.Errorf("docs/architecture.md:%d: package %s has two nodes", i+1, m[2])
			}
			nodes = append(nodes, m[2])
			if group != "" {
				groups[m[2]] = group
			}
		} else if m := mermaidEdge.FindStringSubmatch(line); m != nil {
			rawEdges = append(rawEdges, [2]string{m[1], m[2]})
		} else if strings.Contains(line, "-->") || strings.Contains(line, "[") {
			t.Errorf("docs/architecture.md:%d: write one `id[\"path\"]` node or one `a --> b` edge per line: %s", i+1, strings.TrimSpace(line))
		}
	}
	if graphs != 1 {
		t.Fatalf("docs/architecture.md has %d Mermaid flowcharts, want the one package graph", graphs)
	}
	for _, e := range rawEdges {
		from, ok1 := ids[e[0]]
		to, ok2 := ids[e[1]]
		if !ok1 || !ok2 {
			t.Errorf("docs/architecture.md: edge %s --> %s names an undeclared node", e[0], e[1])
			continue
		}
		if slices.Contains(edges, from+" "+to) {
			t.Errorf("docs/architecture.md: edge %s --> %s written twice", e[0], e[1])
		}
		edges = append(edges, from+" "+to)
	}
	return nodes, edges, groups, strings.Join(text, "\n")
}

// mermaidID is the node id the doc uses for a package path.
func mermaidID(p string) string {
	return strings.NewReplacer("/", "_", "-", "_").Replace(p)
}
