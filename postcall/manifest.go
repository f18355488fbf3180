package postcall

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/matrix-recorder/matrix-recorder/postcall/export"
	"github.com/matrix-recorder/matrix-recorder/recorder"
)

// manifests serialises this process's updates of finished manifests, per folder.
type manifests struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// outer is a lock shared with others who rewrite finished manifests.
	outer func() func()
}

func (ms *manifests) lock(folder string) func() {
	ms.mu.Lock()
	if ms.locks == nil {
		ms.locks = map[string]*sync.Mutex{}
	}
	l := ms.locks[folder]
	if l == nil {
		l = &sync.Mutex{}
		ms.locks[folder] = l
	}
	ms.mu.Unlock()
	l.Lock()
	if ms.outer == nil {
		return l.Unlock
	}
	unlock := ms.outer()
	return func() {
		unlock()
		l.Unlock()
	}
}

// addExports lists files in a finished call folder's manifest (replacing older entries for
// the same file), rewriting it atomically. A manifest that is being recorded into is never
// touched.
func (ms *manifests) addExports(folder string, files []recorder.Export) error {
	if len(files) == 0 {
		return nil
	}
	defer ms.lock(folder)()
	m, err := recorder.ReadManifest(folder)
	if err != nil {
		return err
	}
	if m.Status == recorder.StatusRecording {
		return errLive
	}
	for _, f := range files {
		replaced := false
		for i := range m.Exports {
			if m.Exports[i].File == f.File {
				m.Exports[i] = f
				replaced = true
			}
		}
		if !replaced {
			m.Exports = append(m.Exports, f)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return export.WriteFileAtomic(filepath.Join(folder, recorder.ManifestFile), append(data, '\n'))
}
