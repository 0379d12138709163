"""The batch flow's pure logic: use-case configs, the scored-blobs manifest, staging names."""
