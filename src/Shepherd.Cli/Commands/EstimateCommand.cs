using System.CommandLine;
using System.Globalization;
using Shepherd.Cli.Running;
using Shepherd.Server.Configuration;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Spectre.Console;

namespace Shepherd.Cli.Commands;

/// <summary>
/// <c>shepherd estimate FILE</c>: what a batch file will cost, realtime and through a batch API,
/// and how long the rate limits make it take, before anything is sent.
/// </summary>
internal static class EstimateCommand
{
    public static Command Create()
    {
        var file = CliOptions.InputFile("The batch: OpenAI lines (custom_id, method, url, body) or Anthropic lines (custom_id, params), one JSON object per line");
        var model = new Option<string?>("--model") { Description = "Price every request as if it used this model", HelpName = "MODEL" };
        var rpm = CliOptions.OptionalLong("--rpm", "Requests per minute of each model's lane; by default the configuration's limits for the model", 1);
        var tpm = CliOptions.OptionalLong("--tpm", "Tokens per minute (prompt + expected output) of each model's lane; by default the configuration's limits for the model", 1);
        var config = CliOptions.FilePath("--config", "A configuration file (shepherd.json): its prices and its upstreams' limits apply", "FILE");
        var json = new Option<bool>("--json") { Description = "Print the estimate as one JSON document on stdout" };
        var deadline = CliOptions.Duration("--deadline", "Also price each tier (realtime, native, flex) and the planner's mix for this deadline (6h, 90m, 2d)");
        var cache = CliOptions.FilePath("--cache", "Leave out what this answer cache would answer; by default your runs' cache (~/.cache/shepherd/answers.db), when there is one");
        var noCache = new Option<bool>("--no-cache") { Description = "Price every request, also those the answer cache would answer" };

        var command = new Command("estimate", "Price a batch file before sending it: tokens, expected output, realtime and batch cost per model, and the time the rate limits imply")
        {
            file, model, rpm, tpm, config, json, deadline, cache, noCache,
        };
        command.Validators.Add(result =>
        {
            if (result.GetValue(noCache) && result.GetValue(cache) is not null)
            {
                result.AddError("--no-cache prices everything and --cache names a cache: give one of them.");
            }
        });
        command.SetAction(async (parse, cancellationToken) =>
        {
            var input = parse.GetValue(file)!.FullName;
            var settings = parse.GetValue(config) is { } path ? ConfigFile.Load(path) : null;
            if (parse.GetValue(model) is { } named && string.IsNullOrWhiteSpace(named))
            {
                throw new UsageException("--model needs a model name.");
            }

            var options = new EstimateOptions
            {
                Model = parse.GetValue(model),
                RequestsPerMinute = parse.GetValue(rpm),
                TokensPerMinute = parse.GetValue(tpm),
                Upstreams = settings?.Upstreams.Select(u => u.ToOptions()).ToList() ?? [],
                Deadline = parse.GetValue(deadline),
                Native = settings?.Native?.ToOptions() ?? new(),
            };
            var estimator = new BatchEstimator(settings?.PriceTable() ?? PriceTable.BuiltIn, new TokenEstimator());
            BatchEstimate estimate;
            await using (options.Cache = parse.GetValue(noCache) ? null : await ExistingCacheAsync(parse.GetValue(cache), cancellationToken))
            await using (var stream = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true))
            {
                estimate = await estimator.EstimateAsync(stream, options, cancellationToken);
            }

            var name = ShownPath.Of(input);
            if (!estimate.IsValid)
            {
                return await Refusal.InputRefusedAsync(Console.Out, Console.Error, parse.GetValue(json), name, $"{name} cannot be sent as it is, so it was not priced.",
                    new InputProblems(estimate.Errors, estimate.MoreErrors));
            }

            if (parse.GetValue(json))
            {
                await RemoteOutput.WriteJsonAsync(Console.Out, estimate.WriteTo);
            }
            else
            {
                Write(RemoteOptionSet.StdoutConsole(), name, estimate, options);
            }

            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>
    /// The answer cache at <paramref name="given"/> (the user's runs' when null) when there is one:
    /// an estimate makes none. One named that is not there, or that cannot be read, is said and done without.
    /// </summary>
    private static async Task<Engine.Storage.AnswerCache?> ExistingCacheAsync(string? given, CancellationToken cancellationToken)
    {
        var path = given ?? AnswerCaches.DefaultPath();
        if (!File.Exists(path))
        {
            if (given is not null)
            {
                await Console.Error.WriteLineAsync($"warning: there is no answer cache at {given}; every request is priced.");
            }

            return null;
        }

        try
        {
            return await AnswerCaches.OpenAsync(path, TimeProvider.System, cancellationToken);
        }
        catch (Exception ex) when (ex is System.Data.Common.DbException or IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"warning: the answer cache {path} cannot be read ({ex.Message}); every request is priced.");
            return null;
        }
    }

    /// <summary>The estimate for a person: a table per model with a total, then what was assumed and the time.</summary>
    internal static void Write(IAnsiConsole console, string name, BatchEstimate estimate, EstimateOptions options)
    {
        var pricedAs = options.Model is { } model ? $", priced as {model}" : "";
        var cached = estimate.Cached > 0 ? $" to send; {RemoteOutput.Count(estimate.Cached)} more the answer cache answers ({Cost.Describe(estimate.CachedUsd)} not paid again)" : "";
        console.MarkupLine(Markup.Escape($"{name}: {RemoteOutput.Plural(estimate.Requests, "request")}{cached}{pricedAs}"));
        if (estimate.Models.Count == 0)
        {
            // Every request is answered already: there is nothing to price or to wait for.
            return;
        }

        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("model")
            .AddColumn(new TableColumn("requests").RightAligned())
            .AddColumn(new TableColumn("prompt tokens").RightAligned())
            .AddColumn(new TableColumn("output tokens").RightAligned())
            .AddColumn(new TableColumn("realtime $").RightAligned())
            .AddColumn(new TableColumn("batch $").RightAligned())
            .AddColumn(new TableColumn("saving").RightAligned());
        foreach (var row in estimate.Models)
        {
            table.AddRow(
                Markup.Escape(row.Model),
                RemoteOutput.Count(row.Requests),
                RemoteOutput.Count(row.PromptTokens),
                RemoteOutput.Count(row.OutputTokens) + (row.AssumedOutputTokens > 0 ? " *" : ""),
                row.Priced ? Cost.Describe(row.Realtime.Usd) : "[yellow]unpriced[/]",
                row.Priced ? Cost.Describe(row.Batch.Usd) : "[yellow]unpriced[/]",
                row.Priced ? Saving(row.Realtime.Usd, row.Batch.Usd) : "");
        }

        if (estimate.Models.Count > 1)
        {
            var partial = estimate.Realtime.Priced ? "" : " †";
            table.AddRow(
                "[bold]total[/]",
                $"[bold]{RemoteOutput.Count(estimate.Requests)}[/]",
                $"[bold]{RemoteOutput.Count(estimate.PromptTokens)}[/]",
                $"[bold]{RemoteOutput.Count(estimate.OutputTokens)}{(estimate.AssumedOutputTokens > 0 ? " *" : "")}[/]",
                $"[bold]{Cost.Describe(estimate.Realtime.Usd)}{partial}[/]",
                $"[bold]{Cost.Describe(estimate.Batch.Usd)}{partial}[/]",
                $"[bold]{Saving(estimate.Realtime.Usd, estimate.Batch.Usd)}[/]");
        }

        console.Write(table);
        if (estimate.AssumedOutputTokens > 0)
        {
            console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"* assumed: {RemoteOutput.Count(estimate.RequestsWithAssumedOutput)} request{(estimate.RequestsWithAssumedOutput == 1 ? " names" : "s name")} no max_tokens, so each is expected to answer {estimate.AssumedOutputRatio:0.##} × its prompt tokens, at most {RemoteOutput.Count(estimate.MaxAssumedOutputTokens)}: {RemoteOutput.Count(estimate.AssumedOutputTokens)} of the {RemoteOutput.Count(estimate.OutputTokens)} output tokens.")));
        }

        if (estimate.AssumedOutputTokens < estimate.OutputTokens)
        {
            console.MarkupLine("Output named by max_tokens is counted in full: an upper bound, as answers often stop sooner.");
        }

        var unpriced = estimate.UnpricedModels.ToList();
        if (unpriced.Count > 0)
        {
            console.MarkupLine("[yellow]" + Markup.Escape(
                $"{(estimate.Models.Count > 1 ? "† " : "")}No price for {string.Join(", ", unpriced)}: counted as $0, not guessed. Add {(unpriced.Count == 1 ? "it" : "them")} under \"prices\" in shepherd.json (see docs/cost.md).") + "[/]");
        }

        WriteTime(console, estimate);
        if (estimate.Plan is { } plan)
        {
            WritePlan(console, plan);
        }
    }

    /// <summary>Each tier for every request, then what the planner would do for the deadline.</summary>
    private static void WritePlan(IAnsiConsole console, DeadlinePlan plan)
    {
        console.MarkupLine(Markup.Escape($"For a deadline of {Duration(plan.Deadline.TotalMinutes)}:"));
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("tier")
            .AddColumn(new TableColumn("cost").RightAligned())
            .AddColumn("finishes");
        foreach (var tier in plan.Tiers)
        {
            var word = DispatchTelemetry.TierWord(tier.Tier);
            var finishes = !tier.Available ? "no upstream offers it"
                : tier.Tier == ItemTier.Native ? "within the provider's 24 h window, often sooner"
                : tier.Minutes is { } minutes ? $"in about {Duration(minutes)}{(tier.Tier == ItemTier.Flex ? ", when the provider has capacity" : "")}" : "";
            table.AddRow(word, tier.Available ? Cost.Describe(tier.Cost.Usd) : "—", Markup.Escape(finishes));
        }

        table.AddRow("[bold]plan[/]", $"[bold]{Cost.Describe(plan.Expected.Usd)}[/]", Markup.Escape($"by the deadline; at most {Cost.Describe(plan.Most.Usd)} if everything went realtime"));
        console.Write(table);
        foreach (var model in plan.Models)
        {
            var word = DispatchTelemetry.TierWord(model.Tier);
            console.MarkupLine(Markup.Escape(model.CutOverAfterMinutes is { } after
                ? $"  {model.Model}: {word}; what is not answered after {Duration(after)} goes in realtime"
                : $"  {model.Model}: realtime"));
        }

        if (!plan.OnTime)
        {
            console.MarkupLine("[yellow]" + Markup.Escape($"Realtime needs about {Duration(plan.RealtimeMinutes)} at the lanes' rates: more than the deadline allows, so some requests may not be answered in time.") + "[/]");
        }
    }

    private static void WriteTime(IAnsiConsole console, BatchEstimate estimate)
    {
        if (estimate.Minutes is not { } minutes)
        {
            console.MarkupLine("Time: no rate limits known. Pass --rpm and --tpm, or give the upstreams' rpm and tpm in shepherd.json (--config).");
            return;
        }

        console.MarkupLine(Markup.Escape($"Time at the rate limits: {Duration(minutes)}{(estimate.Models.Count > 1 ? " (each model has its own lanes, side by side)" : "")}"));
        foreach (var row in estimate.Models)
        {
            var parts = new List<string>();
            if (row.RequestsPerMinute is { } rpm)
            {
                parts.Add($"{RemoteOutput.Plural(row.Requests, "request")} at {RemoteOutput.Count(rpm)} rpm");
            }

            if (row.TokensPerMinute is { } tpm)
            {
                parts.Add($"{RemoteOutput.Count(row.PromptTokens + row.OutputTokens)} tokens at {RemoteOutput.Count(tpm)} tpm");
            }

            var line = row.Minutes is { } modelMinutes
                ? $"  {row.Model}: {Duration(modelMinutes)} ({string.Join("; ", parts)})"
                : $"  {row.Model}: no rate limits known";
            console.MarkupLine(Markup.Escape(line));
        }
    }



    private static string Saving(decimal realtime, decimal batch) =>
        realtime > 0 ? string.Create(CultureInfo.InvariantCulture, $"{Cost.Describe(realtime - batch)} ({(realtime - batch) / realtime:0%})") : Cost.Describe(0);

    private static string Duration(double minutes)
    {
        var time = TimeSpan.FromMinutes(minutes);
        return time.TotalMinutes switch
        {
            < 1 => string.Create(CultureInfo.InvariantCulture, $"{Math.Ceiling(time.TotalSeconds):0} s"),
            < 120 => string.Create(CultureInfo.InvariantCulture, $"{time.TotalMinutes:0.#} min"),
            < 48 * 60 => string.Create(CultureInfo.InvariantCulture, $"{(int)time.TotalHours} h {time.Minutes} min"),
            _ => string.Create(CultureInfo.InvariantCulture, $"{time.TotalDays:0.#} days"),
        };
    }
}
