"""Object identities across the frames of a video (ByteTrack-style association, bytetrack.py)."""
