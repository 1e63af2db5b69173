"""faiss indexes over L2-normalised embeddings (inner product = cosine): index specifications
(short names and faiss ``index_factory`` strings), building, search parameters."""
