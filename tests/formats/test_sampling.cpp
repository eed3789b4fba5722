// Next-token choice: greedy, temperature, nucleus — against closed forms and frequencies.
#include "dsv2/sampling.hpp"
#include "support.hpp"

using namespace dsv2;

TEST_CASE("greedy picks the argmax, ties to the lowest id") {
    SamplingRng rng(0);
    const float z[] = {0.5f, 2.0f, -1.0f, 2.0f};
    CHECK(sample_token(z, 4, SamplingOptions{}, rng) == 1);
}

TEST_CASE("temperature sampling follows softmax(z / T); the same seed gives the same tokens") {
    const double z[] = {1.0, 0.0, -1.0, 0.5};
    const SamplingOptions o{0.7, 1.0};
    SamplingRng rng(42);
    std::vector<int> count(4, 0);
    const int n = 200000;
    for (int i = 0; i < n; ++i) ++count[size_t(sample_token(z, 4, o, rng))];
    double tot = 0;
    for (double v : z) tot += std::exp(v / 0.7);
    for (int k = 0; k < 4; ++k) CHECK(double(count[size_t(k)]) / n == Approx(std::exp(z[k] / 0.7) / tot).margin(0.005));
    SamplingRng a(7), b(7);
    for (int i = 0; i < 100; ++i) CHECK(sample_token(z, 4, o, a) == sample_token(z, 4, o, b));
}

TEST_CASE("top-p keeps the smallest most-likely set reaching p") {
    // probabilities at T = 1: exp(z)/Σ — 0.5, 0.3, 0.15, 0.05 by construction
    const double z[] = {std::log(0.15), std::log(0.5), std::log(0.05), std::log(0.3)};
    SamplingRng rng(3);
    std::vector<int> count(4, 0);
    for (int i = 0; i < 50000; ++i) ++count[size_t(sample_token(z, 4, SamplingOptions{1.0, 0.75}, rng))];
    CHECK(count[0] == 0);  // 0.5 + 0.3 ≥ 0.75: ids 1 and 3 only
    CHECK(count[2] == 0);
    CHECK(double(count[1]) / 50000 == Approx(0.5 / 0.8).margin(0.01));
    for (int i = 0; i < 1000; ++i) CHECK(sample_token(z, 4, SamplingOptions{1.0, 0.1}, rng) == 1);
}

TEST_CASE("NaN logits are refused, not sampled from") {
    SamplingRng rng(1);
    const float z[] = {0.1f, std::numeric_limits<float>::quiet_NaN(), 0.3f};
    CHECK_THROWS_AS(sample_token(z, 3, SamplingOptions{0.8, 0.9}, rng), std::invalid_argument);
    CHECK_THROWS_AS(sample_token(z, 3, SamplingOptions{}, rng), std::invalid_argument);
    // a tiny top_p still keeps the most likely token
    const float y[] = {0.1f, 2.0f, 0.3f};
    CHECK(sample_token(y, 3, SamplingOptions{1.0, 1e-12}, rng) == 1);
}
