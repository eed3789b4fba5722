// The installed CMake package: `cmake --install` this build tree into a scratch prefix, then
// configure, build and run a small consumer project that does find_package(dsv2) and links
// dsv2::reference. DSV2_BUILD_DIR, DSV2_CMAKE_COMMAND and DSV2_CXX_COMPILER come from
// tests/CMakeLists.txt.
#include "support.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dsv2/model.hpp"
#include "dsv2/weights.hpp"

namespace {

using dsv2::test::quote;
using dsv2::test::read_bytes;  // "" when the file is missing (a log a failed step never wrote)
using dsv2::test::TempDir;

void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    f << text;
    REQUIRE(f.good());
}

bool exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
}

// Runs a shell command with stdout and stderr in `log`; returns its exit status.
int sh(const std::string& cmd, const std::string& log) {
    const int status = std::system((cmd + " >" + quote(log) + " 2>&1 </dev/null").c_str());
    if (status == -1 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

std::string tail(const std::string& text, size_t n = 3000) { return text.size() > n ? text.substr(text.size() - n) : text; }

const char* kConsumerCMake = R"(cmake_minimum_required(VERSION 3.25)
project(dsv2_consumer LANGUAGES CXX)
find_package(dsv2 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE dsv2::reference)
)";

const char* kConsumerMain = R"(// A program outside the dsv2 tree, built against the installed package.
#include <cstdio>

#include "dsv2/config.hpp"
#include "dsv2/model.hpp"
#include "dsv2/weights.hpp"

int main() {
    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const dsv2::Model<float> model(cfg, dsv2::random_weights<float>(cfg, 3));
    dsv2::LatentCache<float> cache(cfg, 3);
    const dsv2::Mat<float> logits = model.forward({1, 2, 3}, cache);  // [3, V]
    std::printf("logits shape %lld %lld finite %d\n", (long long)logits.rows(), (long long)logits.cols(),
                int(logits.allFinite()));
    std::printf("logit[2][7] %.9g\n", double(logits(2, 7)));
    return 0;
}
)";

}  // namespace

TEST_CASE("the installed package builds and runs a consumer project", "[install]") {
    TempDir tmp;
    const std::string cmake = quote(DSV2_CMAKE_COMMAND);
    const std::string prefix = tmp / "prefix";

    // 1. Install this build tree.
    const std::string install_log = tmp / "install.log";
    const int rc_install = sh(cmake + " --install " + quote(DSV2_BUILD_DIR) + " --prefix " + quote(prefix), install_log);
    INFO("install log:\n" << tail(read_bytes(install_log)));
    REQUIRE(rc_install == 0);
    CHECK(exists(prefix + "/include/dsv2/model.hpp"));
    CHECK(exists(prefix + "/include/dsv2/config.hpp"));
    CHECK(exists(prefix + "/bin/dsv2"));
    // The oracle's package links Eigen and OpenMP and nothing else: no tokenizer regexes, no JSON.
    std::string targets;
    for (const char* lib : {"/lib/cmake/dsv2/dsv2Targets.cmake", "/lib64/cmake/dsv2/dsv2Targets.cmake"})
        if (targets.empty()) targets = read_bytes(prefix + lib);
    REQUIRE_FALSE(targets.empty());
    CHECK(targets.find("INTERFACE_LINK_LIBRARIES \"Eigen3::Eigen;OpenMP::OpenMP_CXX\"") != std::string::npos);
    CHECK(targets.find("ONIG") == std::string::npos);
    CHECK(targets.find("nlohmann") == std::string::npos);
    CHECK_FALSE(exists(prefix + "/include/dsv2/tokenizer.hpp"));

    // 2. Configure and build the consumer against it.
    const std::string src = tmp / "consumer";
    const std::string build = tmp / "consumer-build";
    REQUIRE(mkdir(src.c_str(), 0700) == 0);
    write_text(src + "/CMakeLists.txt", kConsumerCMake);
    write_text(src + "/main.cpp", kConsumerMain);
    const std::string configure_log = tmp / "configure.log";
    const int rc_configure = sh(cmake + " -S " + quote(src) + " -B " + quote(build) + " -DCMAKE_PREFIX_PATH=" +
                                    quote(prefix) + " -DCMAKE_CXX_COMPILER=" + quote(DSV2_CXX_COMPILER) +
                                    " -DCMAKE_BUILD_TYPE=",
                                configure_log);
    INFO("configure log:\n" << tail(read_bytes(configure_log)));
    REQUIRE(rc_configure == 0);
    // The package was found in the scratch prefix, not elsewhere on the machine.
    const std::string cache = read_bytes(build + "/CMakeCache.txt");
    CHECK(cache.find("dsv2_DIR:PATH=" + prefix) != std::string::npos);

    const std::string build_log = tmp / "build.log";
    const int rc_build = sh(cmake + " --build " + quote(build) + " -j2", build_log);
    INFO("build log:\n" << tail(read_bytes(build_log)));
    REQUIRE(rc_build == 0);

    // 3. Run it; it computes what the library computes here.
    const std::string run_log = tmp / "run.log";
    const int rc_run = sh(quote(build + "/consumer"), run_log);
    const std::string out = read_bytes(run_log);
    INFO("consumer output:\n" << out);
    REQUIRE(rc_run == 0);
    CHECK(out.find("logits shape 3 256 finite 1") != std::string::npos);

    const dsv2::Config cfg = dsv2::config_preset("tiny");
    const dsv2::Model<float> model(cfg, dsv2::random_weights<float>(cfg, 3));
    dsv2::LatentCache<float> kv(cfg, 3);
    const dsv2::Mat<float> logits = model.forward({1, 2, 3}, kv);
    const size_t at = out.find("logit[2][7] ");
    REQUIRE(at != std::string::npos);
    const double theirs = std::stod(out.substr(at + 12));
    CHECK(theirs == Approx(double(logits(2, 7))).margin(1e-4));
}
