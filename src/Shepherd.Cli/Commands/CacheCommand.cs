using System.CommandLine;
using System.Globalization;
using Shepherd.Cli.Running;
using Shepherd.Engine;
using Shepherd.Engine.Storage;
using Shepherd.Server.Configuration;

namespace Shepherd.Cli.Commands;

/// <summary>
/// <c>shepherd cache stats|prune|clear</c>: what an answer cache holds, and keeping it small: the
/// cache of the user's runs, another file (<c>--cache</c>), or a server's as its configuration
/// names it (<c>--config</c>). <c>prune</c> removes answers past their age and, when the cache is
/// over its size, those used longest ago; <c>clear</c> removes every answer.
/// </summary>
internal static class CacheCommand
{
    public static Command Create()
    {
        var command = new Command("cache", "An answer cache (your runs', or a server's with --config): what it holds (stats), what is too old or over its size (prune), or all of it (clear)");
        command.Add(Sub("stats", "What the answer cache holds: answers, their size, the oldest", async (cache, ct) =>
        {
            var stats = await cache.StatsAsync(ct);
            return string.Create(CultureInfo.InvariantCulture,
                $"{cache.Where}: {RemoteOutput.Plural(stats.Entries, "answer")}, {stats.Bytes / 1024.0 / 1024.0:0.0} MB of at most {cache.MaxBytes / 1024 / 1024:N0} MB, kept up to {cache.MaxAge.TotalDays:0.#} days{(stats.Oldest is { } oldest ? $"; the oldest from {oldest.UtcDateTime:yyyy-MM-dd HH:mm} UTC" : "")}");
        }));
        command.Add(Sub("prune", "Remove answers older than the cache keeps them, and those used longest ago while it is over its size", async (cache, ct) =>
            $"{cache.Where}: {RemoteOutput.Plural(await cache.PruneAsync(ct), "answer")} removed"));
        command.Add(Sub("clear", "Remove every answer from the answer cache", async (cache, ct) =>
            $"{cache.Where}: {RemoteOutput.Plural(await cache.ClearAsync(ct), "answer")} removed"));
        return command;
    }

    private static Command Sub(string name, string description, Func<AnswerCache, CancellationToken, Task<string>> act)
    {
        var path = CliOptions.FilePath("--cache", "The answer cache; defaults to ~/.cache/shepherd/answers.db ($XDG_CACHE_HOME/shepherd)");
        var config = CliOptions.FilePath("--config", "The cache of shepherd serve with this configuration file: its server.cache, in its store's database or beside its state file", "FILE");
        var command = new Command(name, description) { path, config };
        command.Validators.Add(result =>
        {
            if (result.GetValue(path) is not null && result.GetValue(config) is not null)
            {
                result.AddError("--cache names a cache file and --config a server's cache: give one of them.");
            }
        });
        command.SetAction(async (parse, cancellationToken) =>
        {
            var configPath = parse.GetValue(config);
            var where = configPath is null ? parse.GetValue(path) ?? AnswerCaches.DefaultPath() : $"the answer cache of {configPath}";
            AnswerCache cache;
            try
            {
                cache = configPath is null
                    ? await AnswerCaches.OpenAsync(parse.GetValue(path), TimeProvider.System, cancellationToken)
                    : await OpenServersAsync(configPath, cancellationToken);
            }
            catch (Exception ex) when (ex is System.Data.Common.DbException or ArgumentException)
            {
                throw new CommandException($"shepherd: {where} cannot be used: {ex.Message}", ExitCodes.Error);
            }

            await using (cache)
            {
                await Console.Out.WriteLineAsync(await act(cache, cancellationToken));
            }

            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>The cache a server with the configuration at <paramref name="configPath"/> keeps, where it keeps it.</summary>
    private static Task<AnswerCache> OpenServersAsync(string configPath, CancellationToken cancellationToken)
    {
        var config = ConfigFile.Load(configPath);
        var cache = config.Server?.Cache?.ToOptions()
            ?? throw new UsageException($"{configPath}: the server keeps no answer cache (no server.cache section, or it is not enabled).");
        var store = config.Store ?? config.Server?.State ?? ServerRun.DefaultStatePath;
        var engine = PostgresStoreOptions.Names(store)
            ? new ShepherdEngineOptions { SharedStore = new PostgresStoreOptions { ConnectionString = store } }
            : new ShepherdEngineOptions { Store = new SqliteStoreOptions { Path = store } };
        return cache.OpenAsync(engine, TimeProvider.System, cancellationToken);
    }
}
