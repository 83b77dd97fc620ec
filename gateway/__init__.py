"""polyrank's HTTP API: Cohere's /v1/rerank and /v2/rerank and text-embeddings-inference's
/rerank, in front of a Triton server that serves polyrank pipelines (`polyrank gateway`, or
`polyrank serve --api-port`)."""
