using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Shepherd.Cli.Commands;
using Shepherd.Engine;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Spectre.Console;

namespace Shepherd.Cli.Running;

/// <summary>
/// <c>shepherd run FILE</c>: imports the file into its state store (or finds it there), sends
/// what is not done yet, and writes the output and error files from the store. Killed at any
/// moment, the same command resumes; run again after the end, it sends nothing and rewrites the
/// same files.
/// </summary>
internal sealed class FileBatchRun(RunSettings settings, IAnsiConsole console, TextWriter stdout, TextWriter stderr, TimeProvider time)
{
    /// <summary>The answer cache, opening while the input is read (its first use then costs the sending nothing); null inside when there is none.</summary>
    private Task<AnswerCache?> _cache = Task.FromResult<AnswerCache?>(null);

    public async Task<int> ExecuteAsync(CancellationToken cancellationToken)
    {
        var input = Path.GetFullPath(settings.InputPath);
        if (settings.StatePath is { } state && PostgresStoreOptions.Names(state))
        {
            throw new UsageException("--state: shepherd run keeps its state in a SQLite file; to share a PostgreSQL store among nodes, run shepherd serve --store " + PostgresStoreOptions.Redacted(state));
        }

        var statePath = Path.GetFullPath(settings.StatePath ?? input + ".shepherd.db");
        if (string.Equals(statePath, input, StringComparison.Ordinal))
        {
            throw new UsageException($"--state {Relative(statePath)} is the input file; the state goes to a file of its own.");
        }

        ResultFiles.CheckTarget("--state", statePath);

        using var stateLock = StateLock.Acquire(statePath);
        var (outputPath, errorsPath) = OutputPaths(input);
        await using var results = ResultFiles.Open(outputPath, errorsPath, input, statePath);
        if (settings.Fresh)
        {
            StateFiles.Delete(statePath);
        }

        var stateExisted = File.Exists(statePath);
        int exitCode;
        var config = settings.ConfigPath is { } configPath ? Server.Configuration.ConfigFile.Load(configPath) : null;
        // The run opens its state itself: what the stored batch or the input's first line says
        // decides the upstreams, and the engine is built once they are known.
        _cache = Task.Run(() => OpenCacheAsync(cancellationToken), cancellationToken);
        try
        {
            await using IBatchStore store = new SqliteBatchStore(new SqliteStoreOptions { Path = statePath }, time);
            exitCode = await ExecuteAsync(store, config, input, statePath, stateExisted, results, cancellationToken);
        }
        finally
        {
            // Closing it writes what it still holds to keep.
            if (await _cache is { } cache)
            {
                await cache.DisposeAsync();
            }
        }

        if (exitCode == ExitCodes.InvalidInput && !stateExisted)
        {
            // A rejected input leaves nothing behind when it was the state file's first use.
            StateFiles.Delete(statePath);
        }

        return exitCode;
    }

    private async Task<int> ExecuteAsync(IBatchStore store, ShepherdConfig? config, string input, string statePath, bool stateExisted, ResultFiles results, CancellationToken cancellationToken)
    {
        // The state file is made only once the upstreams are known to answer: a run that cannot
        // send leaves nothing a second run would have to deal with.
        BatchRecord? batch = null;
        BatchRecord? previous = null;
        if (stateExisted)
        {
            await store.InitializeAsync(cancellationToken);
            batch = await FindResumableAsync(store, input, cancellationToken);
            if (batch is { } saved && !await UnchangedAsync(input, saved, cancellationToken))
            {
                // The file was edited: a new batch of it keeps the answers of the requests that did not change.
                (previous, batch) = (await EditedAsync(store, input, saved, cancellationToken), null);
            }
        }

        var first = batch is null ? await PeekAsync(input, cancellationToken) : null;
        var (anthropic, endpoint) = batch is not null
            ? (batch.Format == InputFormat.Anthropic, batch.Endpoint)
            : (first?.Format == InputFormat.Anthropic, first?.Url);
        var (upstreams, target) = EngineSetup.ChooseUpstreams(settings, config, anthropic || endpoint == BatchEndpoints.Messages, endpoint);
        var models = batch is not null ? await store.ListActiveModelsAsync(batch.Id, cancellationToken) : first is { } line ? [line.Model] : [];
        CheckServed(models, upstreams);
        await using var services = BuildServices(store, config, upstreams);
        var runner = services.GetRequiredService<NativeBatchRunner>();
        var mode = batch is null ? (settings.Mode is null && previous is not null ? previous.Mode : RunPlan.ForNew(settings, runner, first?.Model, endpoint)) : batch.Mode;
        RunPlan.Check(settings, runner, models, endpoint);
        // A batch that has ended and is not sent again only has its files written: no upstream is asked.
        var sends = batch is not { HasEnded: true } || settings.RetryFailed;
        if (sends && await UnreachableAsync(services, cancellationToken) is { } unreachable)
        {
            return await StopAsync(ExitCodes.Unreachable, "unreachable", batch,
                $"shepherd: {unreachable}. Nothing was sent{(batch is null ? "" : $"; {RemoteOutput.Count(batch.Finished)} of {RemoteOutput.Plural(batch.Total, "request")} done and saved")}. Check the upstream's url (--base-url, --upstream or the configuration file), or run again once it is up.");
        }

        await store.InitializeAsync(cancellationToken);
        var importTime = TimeSpan.Zero;
        var retried = 0L;
        CarriedOver? carried = null;
        if (batch is null)
        {
            var importStarted = time.GetTimestamp();
            var imported = await ImportAsync(services.GetRequiredService<BatchImporter>(), input, mode, previous, cancellationToken);
            importTime = time.GetElapsedTime(importStarted);
            if (!imported.Accepted)
            {
                await store.DeleteBatchAsync(imported.BatchId, cancellationToken);
                return await ReportRejectedAsync(imported);
            }

            if (previous is not null)
            {
                carried = await store.CarryOverAsync(previous.Id, imported.BatchId, time.GetUtcNow(), cancellationToken);
                await store.DeleteBatchAsync(previous.Id, cancellationToken);
                await stderr.WriteLineAsync(
                    $"{Relative(input)} changed since {previous.Id}: {RemoteOutput.Plural(carried.Reused, "unchanged answer")} kept, " +
                    $"{RemoteOutput.Plural(imported.Total - carried.Reused, "request")} to send, {RemoteOutput.Count(carried.Dropped)} no longer in the file. (--fresh sends everything again.)");
            }

            batch = (await store.GetBatchAsync(imported.BatchId, cancellationToken))!;
            if (settings.RetryFailed && previous is null)
            {
                await stderr.WriteLineAsync($"--retry-failed: {Relative(input)} had no saved batch yet, so every request is sent.");
            }
        }
        else
        {
            (batch, retried) = await ReviseAsync(store, batch, cancellationToken);
        }

        var active = await store.ListActiveModelsAsync(batch.Id, cancellationToken);
        CheckServed(active, upstreams);
        RunPlan.Check(settings, runner, active, batch.Endpoint);
        return await DispatchAndExportAsync(services, store, batch, new RunStart(importTime, retried, statePath, carried), target, results, cancellationToken);
    }

    /// <summary>A stored batch as this run was told to change it: its failed requests queued again (how many is returned), its budget, mode and deadline replaced.</summary>
    private async Task<(BatchRecord Batch, long Retried)> ReviseAsync(IBatchStore store, BatchRecord batch, CancellationToken cancellationToken)
    {
        var requeued = 0L;
        if (settings.BudgetNanos is { } budget && budget != batch.BudgetNanos)
        {
            await store.SetBudgetAsync(batch.Id, budget, cancellationToken);
        }

        if (settings.CacheUse != batch.Cache)
        {
            await store.SetCacheUseAsync(batch.Id, settings.CacheUse, cancellationToken);
        }

        if ((settings.OutputSchema is { } schema && schema != batch.OutputSchema) || (settings.MaxReasks is { } reasks && reasks != batch.MaxReasks))
        {
            await store.SetOutputRulesAsync(batch.Id, settings.OutputSchema ?? batch.OutputSchema, settings.MaxReasks ?? batch.MaxReasks, cancellationToken);
        }

        if (settings.RetryFailed)
        {
            var unfinished = batch.Failed + batch.Expired;
            requeued = await store.RequeueFailedAsync(batch.Id, time.GetUtcNow() + settings.Deadline, cancellationToken);
            await stderr.WriteLineAsync(requeued > 0
                ? $"Retrying {RemoteOutput.Plural(requeued, "failed or expired request")} of {batch.Id}; its {RemoteOutput.Plural(batch.Succeeded, "answer")} {(batch.Succeeded == 1 ? "is" : "are")} kept."
                : $"--retry-failed: {batch.Id} has no failed or expired request{(unfinished > 0 ? " that can be sent again" : "")}; nothing to retry.");
        }

        // Requests retried have the deadline counted from now, as the retry set it.
        batch = (await store.GetBatchAsync(batch.Id, cancellationToken))!;
        if (await RunPlan.ReviseAsync(store, batch, settings.RetryFailed ? settings with { Deadline = null } : settings, cancellationToken))
        {
            batch = (await store.GetBatchAsync(batch.Id, cancellationToken))!;
            await stderr.WriteLineAsync($"{batch.Id} now runs in mode {BatchModeWords.Of(batch.Mode)}, {(batch.ExpiresAt is { } deadline ? $"to be done by {deadline.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC" : "without a deadline")}.");
        }

        return (batch, requeued);
    }

    /// <summary>The format, url and model of the input's first request; null for a broken first line, which the import reports.</summary>
    private static async Task<(InputFormat Format, string Url, string Model)?> PeekAsync(string input, CancellationToken cancellationToken)
    {
        await using var file = OpenInput(input);
        return await BatchImporter.PeekAsync(file, new ImportOptions(), cancellationToken);
    }

    private static void CheckServed(IEnumerable<string> models, IReadOnlyList<UpstreamOptions> upstreams)
    {
        if (models.FirstOrDefault(model => !upstreams.Any(u => u.Serves(model))) is { } unserved)
        {
            throw new UsageException($"No upstream serves the model {unserved}: add it to an upstream's models in the configuration, or remove the models list.");
        }
    }

    /// <summary>
    /// Asks every upstream whether it answers, before anything is sent: when none does, why the
    /// first cannot be reached; when some do not, says so and lets the others serve (null then,
    /// and when every one answers, or the upstream is the simulator).
    /// </summary>
    private async Task<string?> UnreachableAsync(ServiceProvider services, CancellationToken cancellationToken)
    {
        if (settings.Provider == ProviderChoice.Sim)
        {
            return null;
        }

        var timeout = settings.RequestTimeout < ReachTimeout ? settings.RequestTimeout : ReachTimeout;
        var clients = services.GetRequiredService<IReadOnlyList<UpstreamClient>>();
        var problems = await Task.WhenAll(clients.Select(client => client.CheckReachableAsync(timeout, cancellationToken)));
        if (problems.All(problem => problem is not null))
        {
            return problems[0];
        }

        foreach (var problem in problems.OfType<string>())
        {
            await stderr.WriteLineAsync($"warning: {problem}; the other upstreams serve its requests while it is away.");
        }

        return null;
    }

    /// <summary>How long the check before sending waits for an upstream to answer.</summary>
    private static readonly TimeSpan ReachTimeout = TimeSpan.FromSeconds(10);

    private async Task<int> DispatchAndExportAsync(ServiceProvider services, IBatchStore store, BatchRecord batch, RunStart start, string target, ResultFiles results, CancellationToken cancellationToken)
    {
        var released = await store.ReleaseLeasesAsync(cancellationToken);
        var started = time.GetTimestamp();
        var finishedBefore = batch.Finished;
        var dispatcher = services.GetRequiredService<Dispatcher>();
        var cache = await _cache;
        dispatcher.AnswerCache = cache;
        services.GetRequiredService<NativeBatchRunner>().AnswerCache = cache;
        if (batch.Status == BatchStatus.InProgress)
        {
            await stderr.WriteLineAsync((batch.Finished > 0 || released > 0) && start.Carried is null
                ? $"Resuming {batch.Id}: {RemoteOutput.Count(batch.Finished)} of {RemoteOutput.Plural(batch.Total, "request")} already done."
                : $"Sending {RemoteOutput.Plural(batch.Total - batch.Finished, "request")} of {Relative(settings.InputPath)} ({batch.Id}) {RunPlan.Describe(batch, target, settings.Concurrency)}.");

            var ending = await DispatchAsync(dispatcher, services.GetRequiredService<NativeBatchRunner>(), store, batch, start.StatePath, cancellationToken);
            if (ending != ExitCodes.Success)
            {
                return ending;
            }
        }
        else
        {
            await stderr.WriteLineAsync($"{batch.Id} already completed: nothing to send; rewriting the results.");
        }

        var wall = time.GetElapsedTime(started);
        var final = (await store.GetBatchAsync(batch.Id, cancellationToken))!;
        var exportStarted = time.GetTimestamp();
        var exported = await results.WriteAsync((output, errors) => settings.Format == ResultFormat.Jsonl
            ? ResultExporter.ExportAsync(store, final, output, errors, cancellationToken)
            : ResultExporter.ExportTableAsync(store, final, settings.Format, output, errors, cancellationToken));
        var phases = new RunPhases(start.Import, wall, time.GetElapsedTime(exportStarted));
        await new RunSummary(settings.Json, stdout).WriteAsync(final, exported, phases, final.Finished - finishedBefore, start.Retried, dispatcher.Counters, results, start.Carried);
        return final.Succeeded == final.Total ? ExitCodes.Success : ExitCodes.SomeFailed;
    }

    /// <summary>
    /// Dispatches, and hands to providers' batch APIs what goes there, until the batch has ended
    /// (<see cref="ExitCodes.Success"/>), is interrupted, or cannot go on: the provider refused
    /// the key, or no upstream answered for <c>--max-outage</c>. Every answer received is saved in
    /// each case, jobs at providers stay recorded, and the same command resumes (polling them).
    /// </summary>
    private async Task<int> DispatchAsync(Dispatcher dispatcher, NativeBatchRunner runner, IBatchStore store, BatchRecord batch, string statePath, CancellationToken cancellationToken)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(batch.Id, stop.Token);
        // The end of a batch the runner finishes reaches the dispatcher's waiters at once.
        runner.BatchesEnded += dispatcher.NotifyBatchesChanged;
        runner.StopOnRefusedKey = true;
        var native = await NativeWorkAsync(store, batch, cancellationToken) ? runner.RunAsync(stop.Token) : null;
        var completed = dispatcher.WaitForBatchAsync(batch.Id, cancellationToken);
        var work = Task.WhenAny([running, completed, .. native is null ? [] : new[] { native }]).Unwrap();
        var display = new ProgressDisplay(console, settings.Json ? stderr : stdout, ResolveProgressMode(), time);
        await display.ShowAsync(Path.GetFileName(settings.InputPath), work, async () =>
        {
            var now = await store.GetBatchAsync(batch.Id, CancellationToken.None);
            var counters = dispatcher.Counters;
            return new ProgressSample(now!.Total, now.Succeeded, now.Failed, now.InputTokens, now.OutputTokens, counters.InFlight, counters.Retries)
            {
                CostUsd = Cost.ToUsd(now.CostNanos),
                Trouble = LaneTrouble.Describe(dispatcher.Lanes, time.GetUtcNow()),
            };
        });

        var interrupted = false;
        try
        {
            await work;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            interrupted = true;
        }

        await stop.CancelAsync();
        // Rethrows a store failure; otherwise returns once every received answer is committed.
        var stoppedBy = await running;
        await (native ?? Task.CompletedTask);
        runner.BatchesEnded -= dispatcher.NotifyBatchesChanged;
        var saved = (await store.GetBatchAsync(batch.Id, CancellationToken.None))!;
        var progress = $"{RemoteOutput.Count(saved.Finished)} of {RemoteOutput.Plural(saved.Total, "request")} done and saved in {Relative(statePath)}";
        if (interrupted)
        {
            return await StopAsync(ExitCodes.Interrupted, "interrupted", saved, $"Interrupted: {progress}. {RunAgain("to resume")}");
        }

        if (runner.RefusedKey is var (upstream, reason))
        {
            return await StopAsync(ExitCodes.KeyRefused, "key_refused", saved,
                $"shepherd: {upstream} refused the API key of its batch API ({reason}). Nothing was charged for the requests not handed over; {progress}. {KeyHint()}. {RunAgain("to resume")}");
        }

        return stoppedBy switch
        {
            { Halt: { Condition: LaneCondition.KeyRefused } refused } => await StopAsync(ExitCodes.KeyRefused, "key_refused", saved,
                $"shepherd: {stoppedBy.Upstream} refused the API key for {stoppedBy.Model} ({refused.Reason}). Its requests were not charged and none used an attempt; {progress}. "
                + $"{KeyHint()}. {RunAgain("to resume")}"),
            { Halt: { } down } => await StopAsync(ExitCodes.Unreachable, "down", saved,
                $"shepherd: {stoppedBy.Upstream} has been down for {ProgressDisplay.FormatDuration(time.GetUtcNow() - down.Since)} ({down.Reason}), longer than --max-outage {ProgressDisplay.FormatDuration(settings.MaxOutage)}; {progress}. "
                + RunAgain("once it is back")),
            _ => ExitCodes.Success,
        };
    }

    /// <summary>True when the batch has work for the native runner: its mode is not realtime, or jobs of it are still at a provider.</summary>
    private static async Task<bool> NativeWorkAsync(IBatchStore store, BatchRecord batch, CancellationToken cancellationToken) =>
        batch.Mode != BatchMode.Realtime || (await store.ListNativeJobsAsync(batch.Id, cancellationToken)).Any(job => job.Status != NativeJobStatus.Ended);

    /// <summary>The answer cache of the user's runs, unless turned off; one that cannot be opened is said and done without.</summary>
    private async Task<AnswerCache?> OpenCacheAsync(CancellationToken cancellationToken)
    {
        if (settings.NoCache)
        {
            return null;
        }

        try
        {
            return await AnswerCaches.OpenAsync(settings.CachePath, time, cancellationToken);
        }
        catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or IOException or UnauthorizedAccessException)
        {
            await stderr.WriteLineAsync($"warning: the answer cache {settings.CachePath ?? AnswerCaches.DefaultPath()} cannot be used ({ex.Message}); every request is sent. Pass --cache PATH to use another, or --no-cache.");
            return null;
        }
    }

    /// <summary>
    /// Ends a run that stopped before its batch ended: <paramref name="message"/> on stderr, and
    /// with <c>--json</c> a summary on stdout that says why (<paramref name="stopped"/>), so a
    /// script reads one document whatever happened.
    /// </summary>
    private async Task<int> StopAsync(int exitCode, string stopped, BatchRecord? batch, string message)
    {
        await stderr.WriteLineAsync(message);
        if (settings.Json)
        {
            await RemoteOutput.WriteJsonAsync(stdout, json =>
            {
                json.WriteStartObject();
                json.WriteString("batch_id", batch?.Id);
                json.WriteString("status", "stopped");
                json.WriteString("stopped", stopped);
                json.WriteNumber("exit_code", exitCode);
                json.WriteString("message", message);
                json.WriteNumber("total", batch?.Total ?? 0);
                json.WriteNumber("succeeded", batch?.Succeeded ?? 0);
                json.WriteNumber("failed", batch?.Failed ?? 0);
                json.WriteEndObject();
            });
        }

        return exitCode;
    }

    private static async Task<BatchRecord?> FindResumableAsync(IBatchStore store, string input, CancellationToken cancellationToken)
    {
        var batch = await store.FindBatchBySourceAsync(input, cancellationToken);
        if (batch is null)
        {
            return null;
        }

        if (batch.Status is BatchStatus.Validating or BatchStatus.Failed)
        {
            // An import that was interrupted, or rejected: read the file afresh.
            await store.DeleteBatchAsync(batch.Id, cancellationToken);
            return null;
        }

        return batch;
    }

    /// <summary>True when the input is the one <paramref name="batch"/> was made of: the same length and SHA-256.</summary>
    private static async Task<bool> UnchangedAsync(string input, BatchRecord batch, CancellationToken cancellationToken)
    {
        if (new FileInfo(input).Length != batch.SourceBytes)
        {
            return false;
        }

        await using var file = OpenInput(input);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellationToken)) == batch.SourceSha256;
    }

    /// <summary>
    /// The saved batch of an input that was edited since, whose unchanged answers a new batch keeps;
    /// refused while jobs of it are still at a provider (their answers would come back to nothing).
    /// </summary>
    private static async Task<BatchRecord> EditedAsync(IBatchStore store, string input, BatchRecord saved, CancellationToken cancellationToken) =>
        (await store.ListNativeJobsAsync(saved.Id, cancellationToken)).Any(job => job.Status != NativeJobStatus.Ended)
            ? throw new UsageException(
                $"{Relative(input)} changed since {saved.Id} was started from it, and jobs of that batch are still at the provider. " +
                "Run the file as it was until they end, or pass --fresh to start over (answers already received are discarded).")
            : saved;

    /// <summary>Reads the input into a new batch; one that replaces an edited input's <paramref name="previous"/> batch keeps its budget and deadline unless they are given again.</summary>
    private async Task<ImportResult> ImportAsync(BatchImporter importer, string input, BatchMode mode, BatchRecord? previous, CancellationToken cancellationToken)
    {
        await using var file = OpenInput(input);
        var deadline = settings.Deadline ?? (previous?.ExpiresAt - previous?.CreatedAt);
        return await importer.ImportAsync(file, new NewBatch(BatchIds.NewBatchId(), input, Priority: settings.Priority, CompletionWindow: deadline)
        {
            BudgetNanos = settings.BudgetNanos ?? previous?.BudgetNanos,
            Mode = mode,
            Cache = settings.CacheUse,
            OutputSchema = settings.OutputSchema ?? previous?.OutputSchema,
            MaxReasks = settings.MaxReasks ?? previous?.MaxReasks,
        }, cancellationToken);
    }

    private Task<int> ReportRejectedAsync(ImportResult imported) =>
        Refusal.InputRefusedAsync(stdout, stderr, settings.Json, Relative(settings.InputPath), $"{Relative(settings.InputPath)} was not accepted; nothing was sent.",
            new InputProblems(imported.Errors, imported.MoreErrors));

    /// <summary>What to do about a refused key, by where it came from (or that none was sent).</summary>
    private string KeyHint()
    {
        if (settings.ConfigPath is { } config)
        {
            return $"Fix the upstream's apiKey, apiKeyEnv or apiKeyFile in {config}";
        }

        var fromEnvironment = Environment.GetEnvironmentVariable("OPENAI_API_KEY") is { Length: > 0 } || Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY") is { Length: > 0 };
        return settings.ApiKey is { Length: > 0 } ? "Fix the key (--api-key)"
            : fromEnvironment ? "Fix the key (OPENAI_API_KEY or ANTHROPIC_API_KEY, or pass --api-key)"
            : "No key was sent: give one with --api-key, OPENAI_API_KEY or ANTHROPIC_API_KEY";
    }

    private ServiceProvider BuildServices(IBatchStore store, ShepherdConfig? config, IReadOnlyList<UpstreamOptions> upstreams)
    {
        var services = new ServiceCollection();
        services.AddSingleton(time);
        // The run's own store, which it opened to choose the upstreams and disposes itself.
        services.AddSingleton<IBatchStore>(store);
        services.AddLogging(logging => logging
            .SetMinimumLevel(settings.Verbose ? LogLevel.Debug : LogLevel.Warning)
            // An upstream that is down or a refused key shows on the progress line and in the last
            // line of the run; the dispatcher's own words are for --verbose.
            .AddFilter(typeof(Dispatcher).FullName, settings.Verbose ? LogLevel.Debug : LogLevel.Error)
            .AddSimpleConsole(console => console.SingleLine = true));
        // Logs go to stderr, so stdout holds only progress, the summary or --json.
        services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        var options = EngineSetup.Options(settings, config, statePath: null, upstreams);
        // Unlike a server, a run ends when it cannot go on: a refused key or a long outage only the user can fix.
        options.Dispatch.StopWhenKeyRefused = true;
        options.Dispatch.MaxOutage = settings.MaxOutage;
        var http = services.AddShepherdEngine(options);
        EngineSetup.UseSimulatorIfChosen(settings, http, time);

        return services.BuildServiceProvider();
    }

    private ProgressMode ResolveProgressMode() => ProgressDisplay.Resolve(settings.Progress, settings.Json, console);

    private (string Output, string Errors) OutputPaths(string input)
    {
        var folder = Path.GetDirectoryName(input)!;
        var stem = Path.GetFileName(input);
        stem = stem.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? stem[..^6] : Path.GetFileNameWithoutExtension(stem);
        return (
            Path.GetFullPath(settings.OutputPath ?? Path.Combine(folder, stem + settings.Format switch
            {
                ResultFormat.Csv => ".out.csv",
                ResultFormat.Parquet => ".out.parquet",
                _ => ".out.jsonl",
            })),
            Path.GetFullPath(settings.ErrorsPath ?? Path.Combine(folder, stem + ".errors.jsonl")));
    }

    private static FileStream OpenInput(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan | FileOptions.Asynchronous);

    private static string Relative(string path) => ShownPath.Of(path);

    /// <summary>
    /// The command that resumes this run: the same one, but without <c>--fresh</c>, which would
    /// throw away the answers this run saved.
    /// </summary>
    private string RunAgain(string when) => settings.Fresh
        ? $"Run it again without --fresh {when}: {ResumeCommand(Environment.GetCommandLineArgs().Skip(1))}"
        : $"Run the same command again {when}.";

    /// <summary><paramref name="args"/> as a command to type, without <c>--fresh</c> and without the value of <c>--api-key</c>.</summary>
    internal static string ResumeCommand(IEnumerable<string> args)
    {
        var words = new List<string> { "shepherd" };
        var secret = false;
        foreach (var arg in args)
        {
            if (arg == "--fresh")
            {
                continue;
            }

            words.Add(secret ? "\"$KEY\"" : arg.StartsWith("--api-key=", StringComparison.Ordinal) ? "--api-key=\"$KEY\"" : Quoted(arg));
            secret = arg == "--api-key";
        }

        return string.Join(' ', words);
    }

    private static string Quoted(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=@,+%".Contains(c)) ? arg : $"'{arg.Replace("'", "'\\''", StringComparison.Ordinal)}'";
}

/// <summary>What a run knows before it sends: how long the import took, how many failed requests it queued again, and where its state is.</summary>
internal readonly record struct RunStart(TimeSpan Import, long Retried, string StatePath, CarriedOver? Carried);
