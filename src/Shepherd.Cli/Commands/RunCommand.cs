using System.CommandLine;
using Shepherd.Cli.Running;
using Spectre.Console;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd run FILE</c>: runs a batch file to the end, durably, and writes its results.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("file") { Description = "The batch: OpenAI lines (custom_id, method, url, body) or Anthropic lines (custom_id, params), one JSON object per line" };
        file.AcceptExistingOnly();
        var provider = new Option<ProviderChoice>("--provider")
        {
            Description = "Where requests go: sim (the built-in simulated provider), openai (any OpenAI-compatible server), anthropic. Default: anthropic for Anthropic input, openai otherwise",
            DefaultValueFactory = _ => ProviderChoice.Auto,
        };
        var baseUrl = CliOptions.Url("--base-url", "The provider's base url, such as https://api.openai.com/v1 or https://api.anthropic.com");
        var apiKey = new Option<string?>("--api-key") { Description = "The provider's API key; defaults to OPENAI_API_KEY or ANTHROPIC_API_KEY" };
        var anthropicVersion = new Option<string>("--anthropic-version") { Description = "The anthropic-version header", DefaultValueFactory = _ => "2023-06-01" };
        var concurrency = CliOptions.Int("--concurrency", "Requests in flight at once", 32, 1, 10_000);
        var maxAttempts = CliOptions.Int("--max-attempts", "Attempts per request before a transient failure (429, 5xx, timeout) is final", 6, 1, 100);
        var timeout = CliOptions.Seconds("--timeout", "Seconds one attempt may take", 600, 0.001);
        var state = new Option<string?>("--state") { Description = "The state file; defaults to FILE.shepherd.db beside the input" };
        var output = new Option<string?>("--output") { Description = "Where successful results go; defaults to NAME.out.jsonl beside the input" };
        var errors = new Option<string?>("--errors") { Description = "Where failed results go; defaults to NAME.errors.jsonl beside the input" };
        var fresh = new Option<bool>("--fresh") { Description = "Discard saved progress for this input and start over" };
        var progress = new Option<ProgressMode>("--progress") { Description = "auto (a live bar on a terminal), live, plain (a line every 5 s) or none", DefaultValueFactory = _ => ProgressMode.Auto };
        var json = new Option<bool>("--json") { Description = "Print the final summary as JSON on stdout (progress goes to stderr)" };
        var verbose = new Option<bool>("--verbose") { Description = "Log every retry and failure to stderr" };
        var simulator = new SimulatorOptionSet(prefix: "sim-", defaultLatencyMs: 250, defaultJitterMs: 150);

        var command = new Command("run", "Send every request of a batch file, at the provider's pace, and write the results; resumes where it stopped")
        {
            file, provider, baseUrl, apiKey, anthropicVersion, concurrency, maxAttempts, timeout, state, output, errors, fresh, progress, json, verbose,
        };
        foreach (var option in simulator.All)
        {
            command.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = new RunSettings
            {
                InputPath = parse.GetValue(file)!.FullName,
                Provider = parse.GetValue(provider),
                BaseUrl = parse.GetValue(baseUrl),
                ApiKey = parse.GetValue(apiKey),
                AnthropicVersion = parse.GetValue(anthropicVersion)!,
                Concurrency = parse.GetValue(concurrency),
                MaxAttempts = parse.GetValue(maxAttempts),
                RequestTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                StatePath = parse.GetValue(state),
                OutputPath = parse.GetValue(output),
                ErrorsPath = parse.GetValue(errors),
                Fresh = parse.GetValue(fresh),
                Progress = parse.GetValue(progress),
                Json = parse.GetValue(json),
                Verbose = parse.GetValue(verbose),
                Simulator = simulator.Read(parse),
                SimulatorSeed = simulator.Seed(parse),
            };
            return await new FileBatchRun(settings, AnsiConsole.Console, Console.Out, Console.Error, TimeProvider.System).ExecuteAsync(cancellationToken);
        });
        return command;
    }
}
