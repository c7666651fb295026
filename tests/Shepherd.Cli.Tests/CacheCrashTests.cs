using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// <c>shepherd run</c> killed with SIGKILL while it writes answers to its answer cache: the cache
/// file is whole, every answer in it is the answer of the request whose key it is under, and the
/// same command then finishes; started over, its answers from the cache are identical to what the
/// provider answers.
/// </summary>
public sealed class CacheCrashTests : IDisposable
{
    private const int Requests = 3_000;

    // Each life is killed once the cache holds this many answers.
    private static readonly int[] KillPoints = [300, 1_500];

    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _folder.Dispose();
    }

    [Fact]
    public async Task KilledWhileWritingTheCache_LeavesOnlyWholeAnswersUnderTheirOwnKeys_AndTheRerunAnswersAlikeFromIt()
    {
        var requests = BatchFiles.OpenAIChat(Requests);
        var cache = _folder.File("answers.db");
        string[] Run(string input, params string[] more) =>
            ["run", BatchFiles.Write(_folder.File(input), requests), "--provider", "sim", "--sim-latency", "2", "--concurrency", "16", "--progress", "none", .. more];

        // What the provider answers each request, without a cache.
        var reference = await ShepherdProcess.RunAsync(_folder.Path, Run("reference.jsonl", "--no-cache"));
        Assert.True(reference.ExitCode == 0, reference.ToString());
        var answers = Answers(_folder.File("reference.out.jsonl"));
        var answerOfKey = requests.ToDictionary(r => AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", Encoding.UTF8.GetBytes(r.Body)), r => answers[r.CustomId]);

        foreach (var point in KillPoints)
        {
            using (var run = ShepherdProcess.Start(_folder.Path, Run("in.jsonl", "--cache", cache)))
            {
                await Poll.UntilAsync(() => EntriesAsync(cache), entries => entries >= point, TimeSpan.FromSeconds(20), Ct);
                await run.KillAsync();
            }

            var entries = await CheckCacheAsync(cache, answerOfKey);
            Assert.True(entries < Requests, $"the run finished ({entries} answers kept) before it was killed");
        }

        // The same command finishes the batch (what its state file had recorded but the cache had not yet written is not sent again).
        var rerun = await ShepherdProcess.RunAsync(_folder.Path, Run("in.jsonl", "--cache", cache));
        Assert.True(rerun.ExitCode == 0, rerun.ToString());
        Assert.Equal(answers, Answers(_folder.File("in.out.jsonl")));
        var kept = await CheckCacheAsync(cache, answerOfKey);

        // Started over, every answer the cache holds comes from it, and each is the provider's.
        var fresh = await ShepherdProcess.RunAsync(_folder.Path, Run("in.jsonl", "--cache", cache, "--json", "--fresh"));
        Assert.True(fresh.ExitCode == 0, fresh.ToString());
        Assert.Equal(kept, JsonDocument.Parse(fresh.Stdout).RootElement.GetProperty("cached").GetInt64());
        Assert.Equal(answers, Answers(_folder.File("in.out.jsonl")));
        Assert.Equal(Requests, await CheckCacheAsync(cache, answerOfKey));
    }

    /// <summary>Each result line's answer body by custom_id, without the time it was made (<c>created</c>, the one field of an answer that is not derived from its request).</summary>
    private static Dictionary<string, string> Answers(string output) =>
        BatchFiles.ReadJsonl(output).ToDictionary(
            line => line.GetProperty("custom_id").GetString()!,
            line => WithoutCreated(line.GetProperty("response").GetProperty("body").GetRawText()));

    private static string WithoutCreated(string body)
    {
        var answer = JsonNode.Parse(body)!.AsObject();
        answer.Remove("created");
        return answer.ToJsonString();
    }

    private static async Task<long> EntriesAsync(string cache)
    {
        if (!File.Exists(cache))
        {
            return 0;
        }

        try
        {
            await using var connection = await OpenAsync(cache);
            await using var command = connection.CreateCommand();
            command.CommandText = "SELECT COUNT(*) FROM answer_cache";
            return (long)(await command.ExecuteScalarAsync(Ct))!;
        }
        catch (SqliteException)
        {
            // The run is still making the file.
            return 0;
        }
    }

    /// <summary>The file is whole, and each answer in it is the one the provider gives the request of its key; returns how many there are.</summary>
    private static async Task<long> CheckCacheAsync(string cache, Dictionary<string, string> answerOfKey)
    {
        await using var connection = await OpenAsync(cache);
        await using (var check = connection.CreateCommand())
        {
            check.CommandText = "PRAGMA integrity_check";
            Assert.Equal("ok", await check.ExecuteScalarAsync(Ct));
        }

        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT key, status, body, bytes FROM answer_cache";
        await using var reader = await command.ExecuteReaderAsync(Ct);
        long entries = 0;
        while (await reader.ReadAsync(Ct))
        {
            var key = Convert.ToHexStringLower((byte[])reader.GetValue(0));
            var body = (byte[])reader.GetValue(2);
            Assert.True(answerOfKey.TryGetValue(key, out var expected), $"an answer under the key {key}, of no request");
            Assert.Equal((200, body.LongLength), (reader.GetInt32(1), reader.GetInt64(3)));
            Assert.Equal(expected, WithoutCreated(Encoding.UTF8.GetString(body)));
            entries++;
        }

        return entries;
    }

    private static async Task<SqliteConnection> OpenAsync(string cache)
    {
        var connection = new SqliteConnection($"Data Source={cache};Pooling=False;Default Timeout=10");
        await connection.OpenAsync(Ct);
        return connection;
    }
}
