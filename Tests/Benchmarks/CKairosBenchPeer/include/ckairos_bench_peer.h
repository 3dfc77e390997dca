int ckairos_bench_peer_placeholder(void);
