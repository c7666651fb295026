using System.Text.Json;

namespace Shepherd.Server.Tests;

/// <summary>An <c>Idempotency-Key</c> on each create route: the same body returns the first batch, another body is refused.</summary>
public sealed class IdempotencyTests
{
    private const string Line = """{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}""";

    [Fact]
    public async Task AKeyReusedWithADifferentInlineBody_Answers422_AndMakesNoBatch()
    {
        await using var server = await RunningServer.StartAsync();
        const string one = """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"x"}]}""";
        const string two = """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"x"},{"custom_id":"b","prompt":"y"}]}""";

        var (_, first) = await server.PostAsync("/v1/batches", one, idempotencyKey: "inline-1");
        var (status, refused) = await server.PostAsync("/v1/batches", two, idempotencyKey: "inline-1");
        var (sameStatus, same) = await server.PostAsync("/v1/batches", one, idempotencyKey: "inline-1");

        AssertRefused(status, refused, first.GetProperty("id").GetString()!);
        Assert.Equal((200, first.GetProperty("id").GetString()), (sameStatus, same.GetProperty("id").GetString()));
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(1, list.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task AKeyReusedForAnotherFile_Answers422()
    {
        await using var server = await RunningServer.StartAsync();
        var fileA = await server.UploadAsync([Line]);
        var fileB = await server.UploadAsync([Line]);

        var (_, first) = await server.PostAsync("/v1/batches", Create(fileA), idempotencyKey: "file-1");
        var (status, refused) = await server.PostAsync("/v1/batches", Create(fileB), idempotencyKey: "file-1");
        var (_, same) = await server.PostAsync("/v1/batches", Create(fileA), idempotencyKey: "file-1");

        AssertRefused(status, refused, first.GetProperty("id").GetString()!);
        Assert.Equal(first.GetProperty("id").GetString(), same.GetProperty("id").GetString());

        static string Create(string file) => $$"""{"input_file_id":"{{file}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""";
    }

    [Fact]
    public async Task AKeyReusedWithADifferentMessageBatch_Answers422InTheAnthropicEnvelope()
    {
        await using var server = await RunningServer.StartAsync();
        const string one = """{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}]}""";
        const string two = """{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"y"}]}}]}""";

        var (_, first) = await server.PostAsync("/v1/messages/batches", one, idempotencyKey: "anthropic-1");
        var (status, refused) = await server.PostAsync("/v1/messages/batches", two, idempotencyKey: "anthropic-1");

        Assert.Equal(422, status);
        Assert.Equal("error", refused.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", refused.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains(first.GetProperty("id").GetString()!, refused.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    private static void AssertRefused(int status, JsonElement refused, string firstId)
    {
        Assert.Equal(422, status);
        var error = refused.GetProperty("error");
        Assert.Equal(("idempotency_key_reused", "Idempotency-Key"), (error.GetProperty("code").GetString(), error.GetProperty("param").GetString()));
        Assert.Contains(firstId, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Contains("different body", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
