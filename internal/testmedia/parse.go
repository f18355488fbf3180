package testmedia

import "fmt"

// ParseIVF returns the frames of a VP8, VP9 or AV1 IVF file (name is for
// errors) with their durations and keyframe flags, as VideoFrames does for an
// asset. Tests use it for video they make themselves with ffmpeg; it must
// start with a keyframe.
func ParseIVF(name string, data []byte, mimeType string) ([]Frame, error) {
	frames, err := ivfFrames(data, mimeType)
	if err != nil {
		return nil, fmt.Errorf("reading frames of %s: %w", name, err)
	}
	if len(frames) == 0 || !frames[0].Keyframe {
		return nil, fmt.Errorf("%s: does not start with a keyframe", name)
	}
	return frames, nil
}
