package devtools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// SourceCopy builds a module of a tool from a writable copy of its source instead of the
// read-only module cache: some programs need files their module zip leaves out (LiveKit
// Egress embeds web templates that its own build makes with npm), or a small fix to run
// against the servers pinned next to them. The build downloads the module, copies it,
// writes Files, applies Edits and points a replace directive at the copy.
type SourceCopy struct {
	// Module is the module path; its version is the one go.mod.txt requires.
	Module string
	// Files are written into the copy: path relative to the module root -> content.
	Files map[string]string
	// Edits replace exact text in files of the copy, in order.
	Edits []Edit
}

// Edit replaces Old by New in File (once). An edit whose Old text is missing fails the
// build, so a changed pin cannot silently build without it.
type Edit struct {
	File string
	Old  string
	New  string
	// Why is a one-line reason, for the log and the reader.
	Why string
}

// hash adds the copy's description to a module hash, so a changed file or edit rebuilds.
func (s *SourceCopy) hash(h interface{ Write([]byte) (int, error) }) {
	if s == nil {
		return
	}
	fmt.Fprintf(h, "source %s\n", s.Module)
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "file %s %d\n%s", n, len(s.Files[n]), s.Files[n])
	}
	for _, e := range s.Edits {
		fmt.Fprintf(h, "edit %s %d %d\n%s%s", e.File, len(e.Old), len(e.New), e.Old, e.New)
	}
}

// prepare copies the module's source into work/src, changes it, and adds the replace
// directive to work/go.mod.
func (s *SourceCopy) prepare(ctx context.Context, goBin, work string, env []string) error {
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", s.Module)
	cmd.Dir = work
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go mod download %s: %w\n%s%s", s.Module, err, tail(errOut.String(), 2000), tail(out.String(), 2000))
	}
	var info struct {
		Dir   string
		Error string
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return fmt.Errorf("go mod download %s: %w", s.Module, err)
	}
	if info.Error != "" || info.Dir == "" {
		return fmt.Errorf("go mod download %s: %s", s.Module, info.Error)
	}
	dst := filepath.Join(work, "src")
	if err := copyTree(info.Dir, dst); err != nil {
		return fmt.Errorf("copying the source of %s: %w", s.Module, err)
	}
	for name, content := range s.Files {
		path, err := inside(dst, name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s into the source of %s: %w", name, s.Module, err)
		}
	}
	for _, e := range s.Edits {
		path, err := inside(dst, e.File)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("edit of %s: %w", e.File, err)
		}
		if !bytes.Contains(data, []byte(e.Old)) {
			return fmt.Errorf("edit of %s in %s (%s): the text to replace is not there; the pinned version changed", e.File, s.Module, e.Why)
		}
		data = bytes.Replace(data, []byte(e.Old), []byte(e.New), 1)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	edit := exec.CommandContext(ctx, goBin, "mod", "edit", "-replace", s.Module+"=./src")
	edit.Dir = work
	edit.Env = env
	if b, err := edit.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod edit -replace %s: %w\n%s", s.Module, err, b)
	}
	return nil
}

// inside joins a relative path to root, refusing paths that leave it.
func inside(root, rel string) (string, error) {
	p := filepath.Join(root, filepath.FromSlash(rel))
	if !strings.HasPrefix(p, root+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q leaves the source copy", rel)
	}
	return p, nil
}

// copyTree copies regular files and folders (the module cache holds nothing else) and
// makes the copy writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		default:
			return errors.New("unexpected file type at " + path)
		}
	})
}
