package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// Links says how recordings are handed out in the room.
type Links string

// Link kinds.
const (
	// LinksAuto: presigned S3 links when S3 is configured, else the bot's own download
	// endpoint when http.public_url is set, else none.
	LinksAuto      Links = "auto"
	LinksPresigned Links = "presigned"
	LinksHTTP      Links = "http"
	LinksNone      Links = "none"
)

// Storage configures where finished files go and how people get them.
type Storage struct {
	Links Links `yaml:"links"`
	// LinksByDM sends links (the summary's and those of !recordings ID) to the person who
	// asks, in a direct message, instead of posting them in the room.
	LinksByDM bool `yaml:"links_by_dm"`
	S3        S3   `yaml:"s3"`
}

// S3 configures uploads to an S3-compatible store; empty endpoint: off.
type S3 struct {
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	Region   string `yaml:"region"`
	Prefix   string `yaml:"prefix"`
	// AccessKey and SecretKey, or files holding them (or the environment).
	AccessKey     string `yaml:"access_key" secret:"true"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKey     string `yaml:"secret_key" secret:"true"`
	SecretKeyFile string `yaml:"secret_key_file"`
	PathStyle     bool   `yaml:"path_style"`
	TLS           bool   `yaml:"tls"`
	// PartSize is the size of each uploaded part (5 MiB to 5 GiB).
	PartSize Size `yaml:"part_size"`
	// DeleteLocalAfterUpload removes a local file once its copy is confirmed, and
	// DeleteLocalDelay after the recording ended (so the after-call work can read it).
	DeleteLocalAfterUpload bool     `yaml:"delete_local_after_upload"`
	DeleteLocalDelay       Duration `yaml:"delete_local_delay"`
	// PresignExpiry is how long links work: presigned ones and the bot's own http links
	// (at most 7 days, S3's limit).
	PresignExpiry Duration `yaml:"presign_expiry"`
}

// Enabled reports whether uploads are configured.
func (s S3) Enabled() bool { return s.Endpoint != "" }

// Credentials returns the access and secret key, read from their files when set.
func (s S3) Credentials() (access, secret string, err error) {
	access, secret = s.AccessKey, s.SecretKey
	if s.AccessKeyFile != "" {
		if access, err = readSecretFile(s.AccessKeyFile); err != nil {
			return "", "", fmt.Errorf("storage.s3.access_key_file: %w", err)
		}
	}
	if s.SecretKeyFile != "" {
		if secret, err = readSecretFile(s.SecretKeyFile); err != nil {
			return "", "", fmt.Errorf("storage.s3.secret_key_file: %w", err)
		}
	}
	return access, secret, nil
}

func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// HTTP configures the bot's own web server: downloads, storage webhooks, metrics, health.
type HTTP struct {
	// Listen is host:port; empty: no server.
	Listen string `yaml:"listen"`
	// PublicURL is how people reach Listen (through a reverse proxy), for download links.
	PublicURL string `yaml:"public_url"`
	// WebhookToken authenticates bucket notifications at /s3/events; empty: endpoint off.
	WebhookToken string `yaml:"webhook_token" secret:"true"`
	// Metrics serves Prometheus metrics at /metrics: on metrics.listen when that is set,
	// else (for this release, with a warning) on Listen.
	Metrics bool `yaml:"metrics"`
	// Pprof serves Go's profiler at /debug/pprof/ (for benchmarks and debugging). It shows
	// the process's internals to whoever reaches it, so it needs a loopback http.listen.
	Pprof bool `yaml:"pprof"`
}

// Metrics configures the listener for /metrics and /healthz, apart from the public one.
type Metrics struct {
	// Listen is host:port (e.g. 127.0.0.1:9100); empty: /metrics stays on http.listen
	// (deprecated: it moves here in a later release).
	Listen string `yaml:"listen"`
}

// MetricsOnPublicListener reports whether /metrics is served on http.listen (no
// metrics.listen): the old place, kept for a release.
func (c *Config) MetricsOnPublicListener() bool {
	return c.HTTP.Metrics && c.HTTP.Listen != "" && c.Metrics.Listen == ""
}

// warnings are what is allowed but should change, for the log at start.
func (c *Config) warnings() []string {
	var out []string
	if c.MetricsOnPublicListener() {
		out = append(out, "/metrics is served on http.listen, the public port; set metrics.listen (e.g. 127.0.0.1:9100) "+
			"to serve it on a port of its own: a later release serves it only there")
	}
	return out
}

// EffectiveLinks resolves LinksAuto.
func (c *Config) EffectiveLinks() Links {
	if c.Storage.Links != LinksAuto {
		return c.Storage.Links
	}
	switch {
	case c.Storage.S3.Enabled():
		return LinksPresigned
	case c.HTTP.Listen != "" && c.HTTP.PublicURL != "":
		return LinksHTTP
	default:
		return LinksNone
	}
}

// checkListen checks a host:port to listen on: a numeric port, and a host that is empty
// (every address), an IP address or a host name.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`must be host:port, e.g. "127.0.0.1:8080" or ":8080"`)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("must end in a port number from 0 to 65535, not %q", port)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return fmt.Errorf("must start with an IP address or a host name, not %q", host)
	}
	return nil
}

// loopbackListen reports whether host:port listens on a loopback address only.
func loopbackListen(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var hostName = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$`)

// Size is a number of bytes written as 500MB, 2GiB, 1.5GB or a plain number.
type Size int64

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize parses a size.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is out of range", s)
	}
	return Size(v * mult), nil
}

// UnmarshalYAML parses "500MB" or a plain number of bytes.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	var str string
	if err := n.Decode(&str); err != nil {
		return errors.New(`must be a size like "500MB" or "2GiB"`)
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalYAML writes the size in bytes.
func (s Size) MarshalYAML() (any, error) { return strconv.FormatInt(int64(s), 10), nil }

// String formats the size for people, in SI units (1 kB is 1000 bytes): "512 B",
// "8.3 kB", "12 MB", "1.9 GB". Every size the recorder says (in rooms, logs and errors) is
// said by this one function.
func (s Size) String() string {
	if s < 0 {
		return "-" + humanize.Bytes(uint64(-s))
	}
	return humanize.Bytes(uint64(s))
}

// FileMode is a permission mode written in octal, like "0700".
type FileMode uint32

// UnmarshalYAML parses "0700", "700" or "0o700".
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	var str string
	if err := n.Decode(&str); err != nil {
		return errors.New(`must be octal permission bits like "0700"`)
	}
	s := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(str), "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("mode %q must be octal permission bits like \"0700\"", str)
	}
	*m = FileMode(v)
	return nil
}

// MarshalYAML writes the mode in octal.
func (m FileMode) MarshalYAML() (any, error) { return fmt.Sprintf("%04o", uint32(m)), nil }

// Perm is the mode as os.FileMode bits.
func (m FileMode) Perm() os.FileMode { return os.FileMode(m) & os.ModePerm }

// String is the octal mode.
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// EffectiveLowFreeSpace is recordings.low_free_space, or twice min_free_space when unset.
func (r Recordings) EffectiveLowFreeSpace() Size {
	if r.LowFreeSpace > 0 {
		return r.LowFreeSpace
	}
	return 2 * r.MinFreeSpace
}

func defaultStorage(c *Config) {
	// Defaults that hold on an open federation: a recording cannot run for ever, one room
	// or one inviter cannot take every slot.
	c.Recordings.MaxDuration = Duration(6 * time.Hour)
	c.Recordings.MaxPerRoom = 2
	c.Recordings.MaxPerInviter = 4
	c.Recordings.DirMode = 0o700
	c.Recordings.FileMode = 0o600
	c.Recordings.MinFreeSpace = 1 << 30
	c.Recordings.ExpireNotice = Duration(24 * time.Hour)
	c.Recordings.ProgressInterval = Duration(time.Minute)
	c.Storage = Storage{Links: LinksAuto, S3: S3{TLS: true, PartSize: 5 << 20, PresignExpiry: Duration(7 * 24 * time.Hour), DeleteLocalDelay: Duration(10 * time.Minute)}}
	c.HTTP = HTTP{Metrics: true}
}

func (c *Config) validateStorage() []error {
	var errs []error
	r := c.Recordings
	if d := r.MaxDuration.D(); d != 0 && d < 10*time.Second {
		errs = append(errs, fmt.Errorf("recordings.max_duration %s must be 0 (no limit) or at least 10s", d))
	}
	if r.MaxSize != 0 && r.MaxSize < 1<<20 {
		errs = append(errs, fmt.Errorf("recordings.max_size %s must be 0 (no limit) or at least 1MiB", r.MaxSize))
	}
	if r.MinFreeSpace < 0 {
		errs = append(errs, errors.New("recordings.min_free_space must not be negative"))
	}
	if r.LowFreeSpace != 0 && r.LowFreeSpace < r.MinFreeSpace {
		errs = append(errs, fmt.Errorf("recordings.low_free_space %s must be 0 (twice min_free_space) or at least min_free_space %s", r.LowFreeSpace, r.MinFreeSpace))
	}
	if r.MaxPerRoom < 0 || r.MaxPerInviter < 0 {
		errs = append(errs, errors.New("recordings.max_per_room and recordings.max_per_inviter must be 0 (no limit) or more"))
	}
	if r.DirMode&0o700 != 0o700 || r.DirMode > 0o777 {
		errs = append(errs, fmt.Errorf("recordings.dir_mode %s must give the owner rwx (0700 and up, e.g. 0750)", r.DirMode))
	}
	if r.FileMode&0o600 != 0o600 || r.FileMode&0o111 != 0 || r.FileMode > 0o777 {
		errs = append(errs, fmt.Errorf("recordings.file_mode %s must give the owner rw and nobody x (0600 and up, e.g. 0640)", r.FileMode))
	}
	if d := r.ExpireAfter.D(); d != 0 && d < 10*time.Second {
		errs = append(errs, fmt.Errorf("recordings.expire_after %s must be 0 (keep forever) or at least 10s", d))
	}
	if d := r.ProgressInterval.D(); d != 0 && d < 10*time.Second {
		errs = append(errs, fmt.Errorf("recordings.progress_interval %s must be 0 (no progress edits) or at least 10s", d))
	}
	switch c.Storage.Links {
	case LinksAuto, LinksPresigned, LinksHTTP, LinksNone:
	default:
		errs = append(errs, fmt.Errorf("storage.links %q must be auto, presigned, http or none", c.Storage.Links))
	}
	s3 := c.Storage.S3
	if s3.Enabled() {
		if strings.Contains(s3.Endpoint, "://") {
			errs = append(errs, fmt.Errorf("storage.s3.endpoint %q must be host[:port] without http(s):// (storage.s3.tls chooses https)", s3.Endpoint))
		}
		if s3.Bucket == "" {
			errs = append(errs, errors.New("storage.s3.bucket is required with storage.s3.endpoint"))
		}
		if (s3.AccessKey == "" && s3.AccessKeyFile == "") || (s3.SecretKey == "" && s3.SecretKeyFile == "") {
			errs = append(errs, fmt.Errorf("storage.s3 needs access_key and secret_key (or access_key_file and secret_key_file, or %s and %s)",
				EnvName("storage.s3.access_key"), EnvName("storage.s3.secret_key")))
		}
		if s3.AccessKey != "" && s3.AccessKeyFile != "" || s3.SecretKey != "" && s3.SecretKeyFile != "" {
			errs = append(errs, errors.New("storage.s3: set each key either directly or as a file, not both"))
		}
		// The files are read again at each use (they may be rotated); a missing one is
		// reported now rather than at the first upload.
		for _, f := range []struct{ key, path string }{{"storage.s3.access_key_file", s3.AccessKeyFile}, {"storage.s3.secret_key_file", s3.SecretKeyFile}} {
			if f.path != "" {
				if _, err := readSecretFile(f.path); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
				}
			}
		}
	} else if s3.DeleteLocalAfterUpload {
		errs = append(errs, errors.New("storage.s3.delete_local_after_upload needs storage.s3.endpoint"))
	}
	if s3.PartSize < 5<<20 || s3.PartSize > 5<<30 {
		errs = append(errs, fmt.Errorf("storage.s3.part_size %s must be between 5MiB and 5GiB", s3.PartSize))
	}
	if d := s3.PresignExpiry.D(); d < time.Minute || d > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("storage.s3.presign_expiry %s must be between 1m and 168h (S3's limit)", d))
	}
	h := c.HTTP
	if h.Listen != "" {
		if err := checkListen(h.Listen); err != nil {
			errs = append(errs, fmt.Errorf("http.listen %q %w", h.Listen, err))
		}
	}
	if m := c.Metrics.Listen; m != "" {
		if err := checkListen(m); err != nil {
			errs = append(errs, fmt.Errorf("metrics.listen %q %w", m, err))
		} else if m == h.Listen {
			errs = append(errs, fmt.Errorf("metrics.listen %q must differ from http.listen (metrics do not belong on the public port)", m))
		}
	}
	if h.Pprof && !loopbackListen(h.Listen) {
		errs = append(errs, fmt.Errorf("http.pprof needs http.listen on a loopback address (127.0.0.1:PORT or [::1]:PORT), not %q", h.Listen))
	}
	if h.PublicURL != "" {
		if u, err := url.Parse(h.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("http.public_url %q must be an http(s) URL", h.PublicURL))
		}
	}
	if h.WebhookToken != "" && len(h.WebhookToken) < 16 {
		errs = append(errs, errors.New("http.webhook_token must be at least 16 characters"))
	}
	switch c.Storage.Links {
	case LinksPresigned:
		if !s3.Enabled() {
			errs = append(errs, errors.New("storage.links: presigned needs storage.s3"))
		}
	case LinksHTTP:
		if h.Listen == "" || h.PublicURL == "" {
			errs = append(errs, errors.New("storage.links: http needs http.listen and http.public_url"))
		}
	}
	return errs
}
