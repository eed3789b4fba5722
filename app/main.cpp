// dsv2: the command-line front of the oracle and of the engine. Every command registers its own
// options (app/<command>.cpp, add_NAME); this file only parses and dispatches. Every error is one
// line on stderr and a non-zero exit; no command leaves a partial output file.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"

int main(int argc, char** argv) {
    using namespace dsv2::app;
    CLI::App app{"dsv2 — DeepSeek-V2 (MLA + DeepSeekMoE) reference implementation"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "dsv2 0.1.0");
    const std::vector<Command> commands = {add_demo(app),   add_forward(app),  add_compare(app), add_kv_cache(app),
                                           add_params(app), add_generate(app), add_bench(app),   add_inspect(app)};
    const Command* chosen = nullptr;
    try {
        app.parse(argc, argv);
        for (const Command& c : commands)
            if (*c.sub) chosen = &c;
        if (chosen && chosen->check) chosen->check();
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        if (app.get_subcommands().empty() && argc > 1 && argv[1][0] != '-') {
            std::vector<std::string> names;
            for (const Command& c : commands) names.push_back(c.sub->get_name());
            std::sort(names.begin(), names.end());
            std::string list;
            for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
            std::cerr << "dsv2: error: unknown command \"" << argv[1] << "\" (commands: " << list << ")\n";
            return 2;
        }
        std::cerr << "dsv2: error: " << e.what() << " (see dsv2 --help)\n";
        return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
    }
    try {
        return chosen ? chosen->run() : 0;
    } catch (const std::exception& e) {
        std::cerr << "dsv2: error: " << e.what() << "\n";
        return 1;
    }
}
