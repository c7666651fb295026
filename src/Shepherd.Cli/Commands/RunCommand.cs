using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Engine.Storage;
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
        var upstream = CliOptions.Upstreams("--upstream", "Another server for the same models (repeat it; URL or URL@WEIGHT): traffic is shared by weight and moves away from a failing one");
        var config = new Option<string?>("--config") { Description = "A configuration file (shepherd.json) with upstreams, keys, weights and per-lane limits" };
        config.AcceptLegalFilePathsOnly();
        var rpm = CliOptions.OptionalLong("--rpm", "Requests per minute per lane; by default learned from the provider's rate-limit headers", 1);
        var tpm = CliOptions.OptionalLong("--tpm", "Tokens per minute per lane (prompt + max_tokens); by default learned from the provider's headers", 1);
        var priority = new Option<BatchPriority>("--priority") { Description = "low, normal or high: the order among batches sharing a lane", DefaultValueFactory = _ => BatchPriority.Normal };
        var window = CliOptions.Duration("--completion-window", "Give up after this long (24h, 90m): unfinished requests end batch_expired");
        var apiKey = new Option<string?>("--api-key") { Description = "The provider's API key; defaults to OPENAI_API_KEY or ANTHROPIC_API_KEY" };
        var anthropicVersion = new Option<string>("--anthropic-version") { Description = "The anthropic-version header", DefaultValueFactory = _ => "2023-06-01" };
        var concurrency = CliOptions.Int("--concurrency", "The most requests in flight per lane; the lane adapts below it", 32, 1, 10_000);
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
            file, provider, baseUrl, upstream, config, apiKey, anthropicVersion, rpm, tpm, concurrency, maxAttempts, timeout, priority, window,
            state, output, errors, fresh, progress, json, verbose,
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
                Upstreams = parse.GetValue(upstream) ?? [],
                ConfigPath = parse.GetValue(config),
                RequestsPerMinute = parse.GetValue(rpm),
                TokensPerMinute = parse.GetValue(tpm),
                Priority = parse.GetValue(priority),
                CompletionWindow = parse.GetValue(window),
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
