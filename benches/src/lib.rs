//! Load tools for presence (filled by the performance issue).
