// The pieces every command's options share, and the one shape of a command: each command file
// registers its own options on its own subcommand (add_NAME) and returns what checks and runs it.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "commands.hpp"

namespace dsv2::app {

/// One subcommand: its CLI11 subcommand, a check of its options run right after parsing (errors
/// reported as parse errors: "dsv2: error: … (see dsv2 --help)"), and its body.
struct Command {
    CLI::App* sub = nullptr;
    std::function<void()> check;  ///< may be empty
    std::function<int()> run;
};

/// Every command, in the order of `dsv2 --help` (app/main.cpp registers them all).
Command add_demo(CLI::App& app);
Command add_forward(CLI::App& app);
Command add_compare(CLI::App& app);
Command add_kv_cache(CLI::App& app);
Command add_params(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_inspect(CLI::App& app);

/// CLI11 reads "-1" into an unsigned as 2^64 − 1 and NaN passes its Range checks (every comparison
/// with NaN is false): these validators refuse what the conversions would silently change.
const CLI::Validator& unsigned64();
const CLI::Validator& finite();

/// --preset, --seed and (model_too) --model, which excludes --preset.
void add_source(CLI::App* cmd, ModelSource& src, bool model_too);
/// A check (Command::check) that one of --preset / --model was given.
std::function<void()> require_source(const ModelSource& src, const char* cmd);

/// "1.25 GB", "3.40 MB", "12.0 KB"; "15.71B", "3.062M".
std::string gb(double bytes);
std::string billions(int64_t n);

}  // namespace dsv2::app
