//go:build !unix

package ffmpeg

func lowerPriority(int) {}
