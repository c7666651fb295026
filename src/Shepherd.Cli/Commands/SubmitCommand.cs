using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Client;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd submit FILE</c>: uploads a JSONL file to a Shepherd server and creates a batch of it; with <c>--wait</c>, waits for it.</summary>
internal static class SubmitCommand
{
    public static Command Create()
    {
        var file = CliOptions.InputFile("The batch: OpenAI lines (custom_id, method, url, body) or Anthropic lines (custom_id, params), one JSON object per line");
        var endpoint = new Option<string?>("--endpoint") { Description = "The url every line goes to, such as /v1/chat/completions (default: the first line's url)", HelpName = "PATH" };
        endpoint.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } path && BatchEndpoints.Find(path) is null)
            {
                result.AddError($"--endpoint is one of {string.Join(", ", BatchEndpoints.All)}; got '{path}'.");
            }
        });
        var metadata = Metadata();
        var deadline = CliOptions.Deadline("When the batch must be done, counted from its creation (24h, 90m, 7d): unfinished requests then expire; with it, mode auto plans to meet it. Default 24h");
        var mode = CliOptions.Mode("How the server sends the requests: realtime, native (its upstream's batch API), flex (the flex tier) or auto (the cheapest that meets the deadline). Default: the server's (auto when an upstream has a batch API or flex tier for the model, realtime otherwise)");
        var waiting = new WaitOptionSet();
        var remote = new RemoteOptionSet("Print the batch as JSON on stdout (with --wait, once it has ended; progress goes to stderr)");

        var budget = CliOptions.Usd("--budget", "The most the batch may cost, in US dollars: the server sends a request only while it fits");
        var noCache = new Option<bool>("--no-cache") { Description = "The server sends every request, even one its answer cache holds the answer to, and keeps no answer" };
        var noCacheSampled = new Option<bool>("--no-cache-sampled") { Description = "The server sends requests that ask for sampling (temperature above 0, n above 1) every time, rather than replay the answer its cache holds" };
        var outputSchema = CliOptions.SchemaFile("--output-schema", "A JSON Schema every answer must fit (a request that asks for its own structured output keeps its own): the server checks each answer and asks again for one that does not parse or fit");
        var maxInvalid = CliOptions.OptionalInt("--max-invalid-attempts", $"How often the server asks again for an answer that does not fit before the request fails with invalid_output ({Engine.Formats.OutputRules.DefaultMaxReasks} by default)", 0, Engine.Formats.OutputRules.MostReasks);
        var command = new Command("submit", "Upload a JSONL batch file to a Shepherd server and create a batch of it")
        {
            file, endpoint, metadata, deadline, mode, budget, noCache, noCacheSampled, outputSchema, maxInvalid,
        };
        var wait = waiting.AddWithWait(command, "Wait for the batch to end, with progress, and exit as run does (0 all succeeded, 3 some failed)");
        remote.AddTo(command);

        remote.SetAction(command, async (context, cancellationToken) =>
        {
            var parse = context.Parse;
            var input = parse.GetValue(file)!;
            var options = new FileBatchOptions
            {
                Endpoint = parse.GetValue(endpoint),
                Metadata = parse.GetValue(metadata) is { Count: > 0 } pairs ? pairs : null,
                Deadline = parse.GetValue(deadline) ?? TimeSpan.FromHours(24),
                Mode = mode.ValueIn(parse) is { } asked ? BatchModeNames.FromApiName(Engine.Model.BatchModeWords.Of(asked)) : null,
                BudgetUsd = parse.GetValue(budget) is { } nanos ? Engine.Pricing.Cost.ToUsd(nanos) : null,
                Cache = parse.GetValue(noCache) ? false : null,
                CacheSampled = parse.GetValue(noCacheSampled) ? false : null,
                OutputSchema = parse.GetValue(outputSchema) is { } schema ? System.Text.Json.Nodes.JsonNode.Parse(schema) as System.Text.Json.Nodes.JsonObject : null,
                MaxInvalidAttempts = parse.GetValue(maxInvalid),
            };
            // The file is checked here first, as run checks it, so a bad line is named before anything is uploaded.
            var name = ShownPath.Of(input.FullName);
            if (await LocalProblemsAsync(input.FullName, options.Endpoint, cancellationToken) is { } problems)
            {
                return await Refusal.InputRefusedAsync(context.Stdout, context.Stderr, context.Json, name, $"{name} was not submitted; nothing was uploaded.", problems);
            }

            var batch = await context.Client.CreateBatchFromFileAsync(input.FullName, options, cancellationToken);
            var submitted = $"Submitted {input.Name} as {batch.Id} ({batch.StatusName}).";
            return await waiting.FollowAsync(context, wait, batch, submitted, cancellationToken);
        }, waiting.Tune);
        return command;
    }

    /// <summary>What keeps the file from being a batch (the checks of <c>run</c>, without a store), or null when it is one.</summary>
    private static async Task<InputProblems?> LocalProblemsAsync(string path, string? endpoint, CancellationToken cancellationToken)
    {
        var estimator = new BatchEstimator(PriceTable.BuiltIn, new TokenEstimator());
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        var estimate = await estimator.EstimateAsync(stream, new EstimateOptions { Endpoint = endpoint }, cancellationToken);
        return estimate.IsValid ? null : new InputProblems(estimate.Errors, estimate.MoreErrors);
    }

    /// <summary><c>--metadata KEY=VALUE</c>, repeated.</summary>
    private static Option<Dictionary<string, string>> Metadata() => new("--metadata")
    {
        Description = "A KEY=VALUE pair kept with the batch (repeat it; up to 16)",
        HelpName = "KEY=VALUE",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = result =>
        {
            var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var token in result.Tokens)
            {
                var equals = token.Value.IndexOf('=', StringComparison.Ordinal);
                if (equals < 1)
                {
                    result.AddError($"--metadata takes KEY=VALUE, such as --metadata team=search; got '{token.Value}'.");
                    return pairs;
                }

                if (!pairs.TryAdd(token.Value[..equals], token.Value[(equals + 1)..]))
                {
                    result.AddError($"--metadata {token.Value[..equals]} is given twice.");
                    return pairs;
                }
            }

            return pairs;
        },
    };
}
