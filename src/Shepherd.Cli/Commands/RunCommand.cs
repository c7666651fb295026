using System.CommandLine;
using Shepherd.Cli.Running;
using Shepherd.Engine.Model;
using Spectre.Console;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd run FILE</c>: runs a batch file to the end, durably, and writes its results.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var file = CliOptions.InputFile("The batch: OpenAI lines (custom_id, method, url, body) or Anthropic lines (custom_id, params), one JSON object per line");
        var engine = new EngineOptionSet("Where requests go: sim (the built-in simulated provider), openai (any OpenAI-compatible server), anthropic. Default: anthropic for Anthropic input, openai otherwise");
        var priority = CliOptions.Choice("--priority", "The order among batches sharing a lane", BatchPriority.Normal,
            ("low", BatchPriority.Low), ("normal", BatchPriority.Normal), ("high", BatchPriority.High));
        var deadline = CliOptions.Deadline("When the batch must be done, counted from its start (24h, 90m, 7d): unfinished requests then end batch_expired; with it, mode auto plans to meet it (kept with the batch; given again, it replaces the saved one)");
        var mode = CliOptions.Mode("How requests go: realtime (sent one by one), native (the provider's batch API), flex (the flex tier) or auto (the cheapest that meets the deadline). Default: auto with --deadline when an upstream has a batch API or flex tier for the model, realtime otherwise (kept with the batch; given again, it replaces the saved one)");
        var state = CliOptions.FilePath("--state", "The state file; defaults to FILE.shepherd.db beside the input");
        var output = CliOptions.FilePath("--output", "Where successful results go (with --format csv or parquet, every request's row); defaults to NAME.out.jsonl (.csv, .parquet) beside the input", "PATH", "-o");
        var format = CliOptions.Format("jsonl (the batch API's result lines), csv or parquet (a row per request in input order: id, status, the answer's text, usage, cost, and a column per field of a structured answer's schema)");
        var errors = CliOptions.FilePath("--errors", "Where failed results go; defaults to NAME.errors.jsonl beside the input");
        var fresh = new Option<bool>("--fresh") { Description = "Discard saved progress for this input and start over (the answer cache still answers what it holds; --no-cache sends everything)" };
        var cache = CliOptions.FilePath("--cache", "The answer cache shared by your runs; defaults to ~/.cache/shepherd/answers.db ($XDG_CACHE_HOME/shepherd)");
        var noCache = new Option<bool>("--no-cache") { Description = "Neither answer from the answer cache nor keep answers in it: every request is sent" };
        var noCacheSampled = new Option<bool>("--no-cache-sampled") { Description = "Send requests that ask for sampling (temperature above 0, n above 1) every time, rather than replay the answer the cache holds (kept with the batch)" };
        var progress = CliOptions.Progress();
        var json = new Option<bool>("--json") { Description = "Print the final summary as JSON on stdout (progress goes to stderr)" };
        var retryFailed = new Option<bool>("--retry-failed") { Description = "Send the failed and expired requests of the saved batch again (its successes and their cost are kept)" };
        var budget = CliOptions.Usd("--budget", "The most the batch may cost, in US dollars: a request is sent only while it fits (kept with the batch; given again, it replaces the saved one)");
        var outputSchema = CliOptions.SchemaFile("--output-schema", "A JSON Schema every answer must fit (a request that asks for its own structured output keeps its own): answers are checked, and one that does not parse or fit is asked again (kept with the batch)");
        var maxInvalid = CliOptions.OptionalInt("--max-invalid-attempts", $"How often an answer that does not fit the structured output asked for is asked again before its request fails with invalid_output ({Engine.Formats.OutputRules.DefaultMaxReasks} by default; kept with the batch)", 0, Engine.Formats.OutputRules.MostReasks);
        var maxOutage = CliOptions.Duration("--max-outage", "Give up when every upstream has been down this long (15m by default); the batch stays saved to resume");

        var command = new Command("run", "Send every request of a batch file, at the provider's pace, and write the results; resumes where it stopped")
        {
            file, priority, deadline, mode, state, output, format, errors, fresh, cache, noCache, noCacheSampled, progress, json, retryFailed, budget, outputSchema, maxInvalid, maxOutage,
        };
        foreach (var option in engine.All)
        {
            command.Add(option);
        }

        command.Validators.Add(result =>
        {
            if (result.GetValue(fresh) && result.GetValue(retryFailed))
            {
                result.AddError("--fresh starts over and --retry-failed keeps what succeeded: give one of them.");
            }

            if (result.GetValue(noCache) && result.GetValue(cache) is not null)
            {
                result.AddError("--no-cache turns the answer cache off and --cache names one: give one of them.");
            }
        });

        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = engine.Read(parse, new RunSettings
            {
                InputPath = parse.GetValue(file)!.FullName,
                Priority = priority.ValueIn(parse),
                Deadline = parse.GetValue(deadline),
                Mode = mode.ValueIn(parse),
                StatePath = parse.GetValue(state),
                OutputPath = parse.GetValue(output),
                Format = format.ValueIn(parse),
                ErrorsPath = parse.GetValue(errors),
                Fresh = parse.GetValue(fresh),
                CachePath = parse.GetValue(cache),
                NoCache = parse.GetValue(noCache),
                NoCacheSampled = parse.GetValue(noCacheSampled),
                Progress = progress.ValueIn(parse),
                Json = parse.GetValue(json),
                RetryFailed = parse.GetValue(retryFailed),
                BudgetNanos = parse.GetValue(budget),
                OutputSchema = parse.GetValue(outputSchema),
                MaxReasks = parse.GetValue(maxInvalid),
                MaxOutage = parse.GetValue(maxOutage) ?? TimeSpan.FromMinutes(15),
            });
            return await new FileBatchRun(settings, AnsiConsole.Console, Console.Out, Console.Error, TimeProvider.System).ExecuteAsync(cancellationToken);
        });
        return command;
    }
}
