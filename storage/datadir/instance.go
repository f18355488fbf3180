package datadir

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// InstanceFile in data_dir keeps the instance id generated on the first start.
const InstanceFile = "instance-id"

// instanceID is what an instance id may be (config.ValidInstanceID says the same).
var instanceID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// InstanceID returns this recorder's instance id: configured when it is set (instance.id),
// else the one kept in data_dir, else a new one (the host's name and a random suffix),
// written to data_dir so that every later start is the same instance.
func InstanceID(dir, configured string) (string, error) {
	if configured != "" {
		if !instanceID.MatchString(configured) {
			return "", fmt.Errorf("instance.id %q is not a valid instance id", configured)
		}
		return configured, nil
	}
	path := filepath.Join(dir, InstanceFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if !instanceID.MatchString(id) {
			return "", fmt.Errorf("%s holds no valid instance id: remove it to make a new one, or set instance.id", path)
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read the instance id: %w", err)
	}
	id := newInstanceID()
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return "", fmt.Errorf("create data_dir: %w", err)
	}
	if err := WriteSecret(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("keep the instance id in %s: %w", path, err)
	}
	return id, nil
}

// newInstanceID is the host's name (what fits an id of it, at most 40 characters) and 6
// random characters, so that ids say where an instance runs and still differ between
// containers with the same host name.
func newInstanceID() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".") // a host's domain adds nothing here
	var b strings.Builder
	for _, r := range host {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	prefix := strings.TrimLeft(b.String(), "-_")
	if prefix == "" {
		prefix = "recorder"
	}
	const alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	for i := range suffix {
		suffix[i] = alphabet[int(suffix[i])%len(alphabet)]
	}
	return prefix + "-" + string(suffix)
}
