"""Data: LibriTTS-layout corpora, the staged Lhotse pipeline (manifests, phonemes, codec tokens), the token dataset."""
