// Package config loads the bot's configuration: a YAML file decoded strictly over the
// defaults (an unknown key is an error that names it), every key also settable from the
// environment (EnvPrefix and the dotted path) and -set, renamed keys read under their new
// names; then validated, with every problem reported at once under its dotted key
// (Error). Generate writes the annotated example with an operator's values, for a new
// config or to upgrade an old one. The keys are found by reflection over the yaml tags:
// adding a field adds its key, its environment variable and its place in messages.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/crypto/utils"
)

// Example is the annotated example configuration shipped with the binary.
//
//go:embed config.example.yaml
var Example []byte

// Config is the whole configuration file.
type Config struct {
	Matrix     Matrix     `yaml:"matrix"`
	DataDir    string     `yaml:"data_dir"`
	Database   Database   `yaml:"database"`
	Instance   Instance   `yaml:"instance"`
	Recordings Recordings `yaml:"recordings"`
	WebRTC     WebRTC     `yaml:"webrtc"`
	Calls      Calls      `yaml:"calls"`
	Bot        Bot        `yaml:"bot"`
	Storage    Storage    `yaml:"storage"`
	HTTP       HTTP       `yaml:"http"`
	Metrics    Metrics    `yaml:"metrics"`
	PostCall   PostCall   `yaml:"postcall"`
	LiveKit    LiveKit    `yaml:"livekit"`
	Log        Log        `yaml:"log"`
}

// Matrix holds the homeserver and the bot account.
type Matrix struct {
	Homeserver  string `yaml:"homeserver"`
	UserID      string `yaml:"user_id"`
	Password    string `yaml:"password" secret:"true"`
	AccessToken string `yaml:"access_token" secret:"true"`
	DeviceID    string `yaml:"device_id"`
	DeviceName  string `yaml:"device_name"`
	PickleKey   string `yaml:"pickle_key" secret:"true"`
	// RecoveryKey restores the account's cross-signing keys from secret storage so the bot
	// can sign its own device (clients that share keys only with verified devices need it).
	RecoveryKey string `yaml:"recovery_key" secret:"true"`
	// CrossSigning bootstraps cross-signing on first start when the account has none (the
	// recovery key is printed once and written to data_dir/recovery-key.txt).
	CrossSigning bool `yaml:"cross_signing"`
}

// GapPolicy says what a track does when no media arrives for a while.
type GapPolicy string

// Gap policies.
const (
	// GapKeep keeps real time: the gap stays in the timeline (Ogg: Opus packets that
	// ask the decoder for concealment, RFC 7845 §4.1; WebM: block timecodes).
	GapKeep GapPolicy = "keep"
	// GapFill fills audio gaps with Opus frames of digital silence.
	GapFill GapPolicy = "fill"
	// GapSplit starts a new part of the track after SplitAfter of nothing.
	GapSplit GapPolicy = "split"
)

// Recordings configures where and how files are written.
type Recordings struct {
	Dir string `yaml:"dir"`
	// FlushInterval is the recovery point: data reaches the file at least this often.
	FlushInterval Duration `yaml:"flush_interval"`
	// Fsync makes every flush an fsync, so a power loss (not only a crash) loses at most
	// FlushInterval of media.
	Fsync      bool      `yaml:"fsync"`
	GapPolicy  GapPolicy `yaml:"gap_policy"`
	SplitAfter Duration  `yaml:"split_after"`
	// AudioJitter and VideoJitter bound how long a missing packet is waited for.
	AudioJitter Duration `yaml:"audio_jitter"`
	VideoJitter Duration `yaml:"video_jitter"`
	// MaxDuration stops a recording this long (warning a minute before); 0: no limit.
	MaxDuration Duration `yaml:"max_duration"`
	// MaxSize stops a recording whose files reach this size; 0: no limit.
	MaxSize Size `yaml:"max_size"`
	// MinFreeSpace stops every recording cleanly when the disk has less free space (the
	// hard floor).
	MinFreeSpace Size `yaml:"min_free_space"`
	// LowFreeSpace: below this much free space, recordings of rooms that use more than
	// their share of the disk are stopped first, so one room cannot end every other
	// room's recording by filling the disk; 0: twice MinFreeSpace.
	LowFreeSpace Size `yaml:"low_free_space"`
	// MaxPerRoom bounds the recordings running at once in one room (0: no limit).
	MaxPerRoom int `yaml:"max_per_room"`
	// MaxPerInviter bounds the recordings running at once in the rooms one user invited
	// the bot into (0: no limit).
	MaxPerInviter int `yaml:"max_per_inviter"`
	// DirMode and FileMode are the permissions of what the recorder creates: call folders,
	// media files, manifests, data_dir and its databases and keys.
	DirMode  FileMode `yaml:"dir_mode"`
	FileMode FileMode `yaml:"file_mode"`
	// ExpireAfter deletes recordings (local and uploaded) this long after they end; 0: never.
	ExpireAfter Duration `yaml:"expire_after"`
	// ExpireNotice is how long before the deletion the room is told.
	ExpireNotice Duration `yaml:"expire_notice"`
	// ProgressInterval is how often the start notice is edited with elapsed time and size.
	ProgressInterval Duration `yaml:"progress_interval"`
	// PauseOnShutdown makes a clean stop (SIGTERM) pause group recordings instead of
	// ending them: the next start continues them in the same folder. Off: they end, with
	// their summaries, as a call that ends does.
	PauseOnShutdown bool `yaml:"pause_on_shutdown"`
}

// WebRTC configures the bot's peer connections.
type WebRTC struct {
	// IncludeLoopback also offers 127.0.0.1 candidates (single-host setups, tests).
	IncludeLoopback bool `yaml:"include_loopback"`
	// UDPPortMin and UDPPortMax restrict the ephemeral UDP ports used for ICE.
	UDPPortMin uint16 `yaml:"udp_port_min"`
	UDPPortMax uint16 `yaml:"udp_port_max"`
	// UDPPort, when set, multiplexes all peer connections on this one UDP port.
	UDPPort uint16 `yaml:"udp_port"`
	// PublicIPs are announced as host candidates instead of the local addresses (1:1 NAT).
	PublicIPs []string `yaml:"public_ips"`
	// Interfaces limits ICE to these network interfaces (empty: all).
	Interfaces []string `yaml:"interfaces"`
	// ICEServers are used in addition to the homeserver's TURN servers.
	ICEServers []ICEServer `yaml:"ice_servers" secret:"true"`
	// UseHomeserverTURN asks the homeserver for TURN credentials.
	UseHomeserverTURN bool `yaml:"use_homeserver_turn"`
}

// ICEServer is a STUN or TURN server.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential" secret:"true"`
}

// Calls configures call handling.
type Calls struct {
	// AutoAnswer answers 1:1 calls in rooms where the bot and exactly one other person are joined.
	AutoAnswer bool `yaml:"auto_answer"`
	// MaxDuration ends a call after this long (0: no limit).
	MaxDuration Duration `yaml:"max_duration"`
	// ICETimeout hangs up a call whose connection is not restored in this time.
	ICETimeout Duration `yaml:"ice_timeout"`
	// MaxTracks bounds the tracks recorded per call.
	MaxTracks int `yaml:"max_tracks"`
	// MaxCalls bounds the 1:1 calls answered at the same time.
	MaxCalls int `yaml:"max_calls"`
	// MaxGroupRecordings bounds the group recordings (Element Call, full mesh, Egress)
	// running at the same time.
	MaxGroupRecordings int `yaml:"max_group_recordings"`
}

// Bot configures the chat side.
type Bot struct {
	CommandPrefix string `yaml:"command_prefix"`
	// AllowedInviters lists user ids ("@a:example.org"), servers (":example.org") or "*"
	// (everyone) whose invites the bot accepts; everyone else's invites are declined.
	// Empty: users of the bot's own homeserver only.
	AllowedInviters []string `yaml:"allowed_inviters"`
	// Notices makes the bot post notices when recording starts and ends.
	Notices bool `yaml:"notices"`
	// RecordPowerLevel is the power level needed to start and stop group recordings;
	// -1 means the room's level for sending state events (what starting a call needs).
	RecordPowerLevel int `yaml:"record_power_level"`
	// RecordUsers may always start and stop recordings, whatever their power level.
	RecordUsers []string `yaml:"record_users"`
	// RecordingDisplayName marks the bot's display name in a room while it records there
	// (RecordingDisplayNameFormat), and restores its global name afterwards.
	RecordingDisplayName bool `yaml:"recording_displayname"`
	// RecordingDisplayNameFormat is the bot's display name in a room while it records:
	// "{name}" stands for its global display name.
	RecordingDisplayNameFormat string `yaml:"recording_displayname_format"`
}

// DisplayNameName is what bot.recording_displayname_format replaces with the bot's
// global display name.
const DisplayNameName = "{name}"

// maxDisplayNameFormat bounds bot.recording_displayname_format (homeservers refuse long
// display names; the global name is shortened to fit).
const maxDisplayNameFormat = 100

// RecordingName is the bot's display name while it records, from its global one.
func (b Bot) RecordingName(global string) string {
	return strings.ReplaceAll(b.RecordingDisplayNameFormat, DisplayNameName, global)
}

// AllowAllInviters in bot.allowed_inviters accepts invites from everyone.
const AllowAllInviters = "*"

func checkInviterEntry(a string) error {
	switch {
	case a == AllowAllInviters:
	case strings.HasPrefix(a, "@") && strings.Contains(a, ":"):
	case strings.HasPrefix(a, ":") && len(a) > 1 && !strings.ContainsAny(a, "@ /"):
	default:
		return fmt.Errorf("%q is not a user id (@name:server), a server (:server) or \"*\"", a)
	}
	return nil
}

// InviterAllowed reports whether bot.allowed_inviters accepts an invite from sender; an
// empty list accepts the users of the bot's own homeserver (ownServer) only.
func (b Bot) InviterAllowed(sender, ownServer string) bool {
	list := b.AllowedInviters
	if len(list) == 0 {
		list = []string{":" + ownServer}
	}
	for _, a := range list {
		switch {
		case a == AllowAllInviters, a == sender:
			return true
		case strings.HasPrefix(a, ":") && strings.HasSuffix(sender, a) && strings.HasPrefix(sender, "@"):
			return true
		}
	}
	return false
}

// Log configures logging.
type Log struct {
	Level string `yaml:"level"`
	// Format is LogAuto, LogJSON or LogConsole.
	Format string `yaml:"format"`
}

// Log formats (log.format).
const (
	// LogAuto is the console format on a terminal and JSON otherwise (a service
	// manager's journal, a container's log).
	LogAuto    = "auto"
	LogJSON    = "json"
	LogConsole = "console"
)

// Duration is a time.Duration written as "1s", "250ms", "2h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string ("90s", "15m", "1h30m"). Its errors name no
// line or key: the decoder adds both.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return errors.New(`must be a duration like "90s", "15m" or "2h"`)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a duration as the config writes it, with messages for people:
// `missing unit in "90" (write it like 90s, 15m or 2h)`.
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		// time says `time: missing unit in duration "90"`.
		msg := strings.Replace(strings.TrimPrefix(err.Error(), "time: "), " in duration ", " in ", 1)
		return 0, fmt.Errorf("%s (write it like 90s, 15m or 2h)", msg)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return Duration(v), nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the configuration with every default filled in and no account.
func Default() Config {
	c := defaultCore()
	defaultStorage(&c)
	c.PostCall = defaultPostCall()
	c.LiveKit = defaultLiveKit()
	return c
}

func defaultCore() Config {
	return Config{
		Matrix:   Matrix{DeviceName: "matrix-recorder", CrossSigning: true},
		DataDir:  "./data",
		Database: Database{Type: DatabaseSQLite},
		Recordings: Recordings{
			Dir:             "./recordings",
			FlushInterval:   Duration(time.Second),
			PauseOnShutdown: true,
			GapPolicy:       GapKeep,
			SplitAfter:      Duration(30 * time.Second),
			AudioJitter:     Duration(100 * time.Millisecond),
			VideoJitter:     Duration(300 * time.Millisecond),
		},
		WebRTC: WebRTC{UseHomeserverTURN: true},
		Calls: Calls{
			AutoAnswer: true,
			ICETimeout: Duration(30 * time.Second),
			MaxTracks:  64,
			MaxCalls:   32,
			// Group recordings take more of everything than a 1:1 call (many tracks).
			MaxGroupRecordings: 8,
		},
		Bot: Bot{CommandPrefix: "!", Notices: true, RecordPowerLevel: -1,
			RecordingDisplayName: true, RecordingDisplayNameFormat: "🔴 Recording · " + DisplayNameName},
		Log: Log{Level: "info", Format: LogAuto},
	}
}

// Validate reports every problem with the configuration at once.
// It is what Load checks after decoding, without the file's line numbers.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return &Error{Source: "the configuration", Problems: ps}
	}
	return nil
}

// problems checks every value, and every value against the others. Each message starts
// with the dotted key it is about, which becomes the Problem's Key.
func (c *Config) problems() []Problem {
	errs := c.validateCore()
	errs = append(errs, c.validateStorage()...)
	errs = append(errs, c.validateDatabase()...)
	errs = append(errs, c.PostCall.validate()...)
	errs = append(errs, c.validateLiveKit()...)
	errs = append(errs, c.placeholderErrors()...)
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k] = true
	}
	for _, s := range sectionsOf(reflect.TypeOf(Config{})) {
		known[s] = true
	}
	out := make([]Problem, len(errs))
	for i, err := range errs {
		out[i] = Problem{Key: longestKeyPrefix(err.Error(), known), Msg: err.Error()}
	}
	return out
}

// Log levels, as log.level takes them.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func (c *Config) validateCore() []error {
	var errs []error
	if c.Matrix.Homeserver == "" {
		errs = append(errs, fmt.Errorf("matrix.homeserver is required: your homeserver's URL, e.g. https://matrix.your.domain (or %s)", EnvName("matrix.homeserver")))
	} else if u, err := url.Parse(c.Matrix.Homeserver); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("matrix.homeserver %q must be an http(s) URL", c.Matrix.Homeserver))
	} else if placeholderHost(u.Hostname()) {
		errs = append(errs, fmt.Errorf("matrix.homeserver is still the example's %s: fill in your homeserver's URL", c.Matrix.Homeserver))
	}
	if c.Matrix.UserID == "" {
		errs = append(errs, fmt.Errorf("matrix.user_id is required: the bot's account, e.g. @recorder:your.domain (or %s)", EnvName("matrix.user_id")))
	} else if !strings.HasPrefix(c.Matrix.UserID, "@") || !strings.Contains(c.Matrix.UserID, ":") {
		errs = append(errs, fmt.Errorf("matrix.user_id %q must look like @name:server", c.Matrix.UserID))
	} else if _, server, _ := strings.Cut(c.Matrix.UserID, ":"); placeholderHost(server) {
		errs = append(errs, fmt.Errorf("matrix.user_id is still the example's %s: fill in the bot's account", c.Matrix.UserID))
	}
	if c.Matrix.Password == "" && c.Matrix.AccessToken == "" {
		errs = append(errs, fmt.Errorf("matrix.password or matrix.access_token is required (or the environment variable %s or %s, or %s)",
			EnvName("matrix.password"), EnvName("matrix.password")+EnvFileSuffix, EnvName("matrix.access_token")))
	}
	if k := strings.TrimSpace(c.Matrix.RecoveryKey); k != "" && utils.DecodeBase58RecoveryKey(k) == nil {
		errs = append(errs, errors.New("matrix.recovery_key is not a recovery key (48 characters like \"EsTc 1234 ...\", as the client showed it); check it for a typo"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir must not be empty"))
	}
	if c.Recordings.Dir == "" {
		errs = append(errs, errors.New("recordings.dir must not be empty"))
	}
	if fi := c.Recordings.FlushInterval.D(); fi < 50*time.Millisecond || fi > time.Minute {
		errs = append(errs, fmt.Errorf("recordings.flush_interval %s must be between 50ms and 1m", fi))
	}
	switch c.Recordings.GapPolicy {
	case GapKeep, GapFill, GapSplit:
	default:
		errs = append(errs, fmt.Errorf("recordings.gap_policy %q must be keep, fill or split", c.Recordings.GapPolicy))
	}
	if c.Recordings.GapPolicy == GapSplit && c.Recordings.SplitAfter.D() < time.Second {
		errs = append(errs, errors.New("recordings.split_after must be at least 1s"))
	}
	for _, j := range []struct {
		name string
		d    Duration
	}{{"recordings.audio_jitter", c.Recordings.AudioJitter}, {"recordings.video_jitter", c.Recordings.VideoJitter}} {
		if j.d.D() < 10*time.Millisecond || j.d.D() > 5*time.Second {
			errs = append(errs, fmt.Errorf("%s %s must be between 10ms and 5s", j.name, j.d.D()))
		}
	}
	if (c.WebRTC.UDPPortMin == 0) != (c.WebRTC.UDPPortMax == 0) || c.WebRTC.UDPPortMin > c.WebRTC.UDPPortMax {
		errs = append(errs, errors.New("webrtc.udp_port_min and webrtc.udp_port_max must both be set, min <= max"))
	}
	if c.WebRTC.UDPPort != 0 && c.WebRTC.UDPPortMin != 0 {
		errs = append(errs, errors.New("set either webrtc.udp_port or webrtc.udp_port_min/max, not both"))
	}
	for _, ip := range c.WebRTC.PublicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("webrtc.public_ips: %q is not an IP address", ip))
		}
	}
	if c.Calls.MaxTracks < 1 || c.Calls.MaxTracks > 1024 {
		errs = append(errs, fmt.Errorf("calls.max_tracks %d must be between 1 and 1024", c.Calls.MaxTracks))
	}
	if c.Calls.MaxCalls < 1 || c.Calls.MaxCalls > 10000 {
		errs = append(errs, fmt.Errorf("calls.max_calls %d must be between 1 and 10000", c.Calls.MaxCalls))
	}
	if c.Calls.MaxGroupRecordings < 1 || c.Calls.MaxGroupRecordings > 10000 {
		errs = append(errs, fmt.Errorf("calls.max_group_recordings %d must be between 1 and 10000", c.Calls.MaxGroupRecordings))
	}
	for _, a := range c.Bot.AllowedInviters {
		if err := checkInviterEntry(a); err != nil {
			errs = append(errs, fmt.Errorf("bot.allowed_inviters: %w", err))
		}
	}
	if c.Bot.RecordPowerLevel < -1 {
		errs = append(errs, errors.New("bot.record_power_level must be -1 (the room's state level) or a power level"))
	}
	for _, u := range c.Bot.RecordUsers {
		if !strings.HasPrefix(u, "@") || !strings.Contains(u, ":") {
			errs = append(errs, fmt.Errorf("bot.record_users: %q is not a user id", u))
		}
	}
	if f := c.Bot.RecordingDisplayNameFormat; c.Bot.RecordingDisplayName && strings.TrimSpace(f) == "" {
		errs = append(errs, errors.New("bot.recording_displayname_format must not be empty while bot.recording_displayname is on"))
	} else if n := len([]rune(f)); n > maxDisplayNameFormat {
		errs = append(errs, fmt.Errorf("bot.recording_displayname_format is %d characters long, at most %d", n, maxDisplayNameFormat))
	} else if strings.ContainsFunc(f, func(r rune) bool { return unicode.IsControl(r) }) {
		errs = append(errs, errors.New("bot.recording_displayname_format must not contain control characters (line breaks, tabs)"))
	}
	if c.Bot.CommandPrefix == "" {
		errs = append(errs, errors.New("bot.command_prefix must not be empty"))
	} else if strings.ContainsFunc(c.Bot.CommandPrefix, unicode.IsSpace) {
		errs = append(errs, fmt.Errorf("bot.command_prefix %q must not contain spaces", c.Bot.CommandPrefix))
	}
	if !slices.Contains(logLevels, strings.ToLower(c.Log.Level)) {
		errs = append(errs, fmt.Errorf("log.level %q must be one of %s", c.Log.Level, strings.Join(logLevels, ", ")))
	}
	switch c.Log.Format {
	case LogAuto, LogJSON, LogConsole:
	default:
		errs = append(errs, fmt.Errorf("log.format %q must be auto, json or console", c.Log.Format))
	}
	return errs
}
