using System.Text.Json.Nodes;
using Shepherd.Client.Backends;
using Shepherd.Server.Tests;

namespace Shepherd.Client.Tests;

/// <summary>Typed chat requests: written as each endpoint takes them, and run through a server.</summary>
public sealed class ChatRequestTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly ChatRequest Review = new()
    {
        System = "You classify product reviews.",
        User = "Great battery, poor screen.",
        MaxTokens = 40,
        Temperature = 0,
    };

    [Fact]
    public void ForChatCompletions_TheSystemPromptLeadsTheMessages_AndTheFormatIsResponseFormat()
    {
        var schema = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { ["sentiment"] = new JsonObject { ["type"] = "string" } } };
        var item = BatchItem.FromChat("r1", Review with { ResponseFormat = ResponseFormat.JsonSchema("review", schema) });

        var body = Requests.BodyOf(item, "/v1/chat/completions", "gpt-4o-mini");

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""
            {"messages":[{"role":"system","content":"You classify product reviews."},{"role":"user","content":"Great battery, poor screen."}],
             "max_tokens":40,
             "response_format":{"type":"json_schema","json_schema":{"name":"review","schema":{"type":"object","properties":{"sentiment":{"type":"string"}}},"strict":true}},
             "temperature":0,"model":"gpt-4o-mini"}
            """), body), body.ToJsonString());
    }

    [Fact]
    public void ForAnthropicMessages_TheSystemPromptIsItsOwnField_AndMaxTokensIsAlwaysThere()
    {
        var body = Requests.BodyOf(BatchItem.FromChat("r1", new ChatRequest { System = "Be brief.", User = "Hi" }), "/v1/messages", null);

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"max_tokens":1024,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}"""), body), body.ToJsonString());
    }

    [Fact]
    public void AFormatAnthropicCannotTake_OrAnEndpointWithoutChat_IsRefusedSayingWhatToDo()
    {
        var formatted = BatchItem.FromChat("r1", Review with { ResponseFormat = ResponseFormat.JsonObject });

        Assert.Contains("input_schema", Assert.Throws<ArgumentException>(() => Requests.BodyOf(formatted, "/v1/messages", null)).Message, StringComparison.Ordinal);
        Assert.Contains("/v1/embeddings", Assert.Throws<ArgumentException>(() => Requests.BodyOf(formatted, "/v1/embeddings", null)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChatRequests_RunThroughAServer_AndEachGetsItsAnswer()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientTests.ClientOf(server);

        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "gpt-4o-mini",
            Requests = [BatchItem.FromChat("a", Review), BatchItem.FromChat("b", Review with { User = "Broke in a week.", ResponseFormat = ResponseFormat.JsonObject })],
        }, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        Assert.True(done.AllSucceeded, done.Batch.ToString());
        Assert.Equal(["a", "b"], (await client.GetResultsAsync(batch.Id, Ct).ToListAsync(Ct)).Select(r => r.CustomId));
    }

    [Fact]
    public void AStatusAddedByANewerServer_IsUnknown_NotAnError_AndKeepsItsWord()
    {
        using var openAI = System.Text.Json.JsonDocument.Parse("""{"id":"batch_1","status":"paused","request_counts":{"total":3,"completed":1,"failed":0}}""");
        using var anthropic = System.Text.Json.JsonDocument.Parse("""{"id":"msgbatch_1","processing_status":"archiving","request_counts":{"processing":0,"succeeded":2}}""");

        var batch = Wire.OpenAIBatch(openAI.RootElement);
        var messageBatch = Wire.AnthropicBatch(anthropic.RootElement);

        Assert.Equal((BatchStatus.Unknown, "paused", false), (batch.Status, batch.StatusName, batch.HasEnded));
        Assert.Equal((BatchStatus.Unknown, "archiving"), (messageBatch.Status, messageBatch.StatusName));
        Assert.Equal("unknown", BatchStatus.Unknown.ToApiName());
        Assert.Equal("paused", batch.Raw.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData(24 * 3600.0, "1d")]
    [InlineData(7 * 24 * 3600.0, "7d")]
    [InlineData(5 * 3600.0, "5h")]
    [InlineData(90 * 60.0, "90m")]
    [InlineData(61.0, "61s")]
    [InlineData(0.2, "1s")]
    public void ACompletionWindow_IsWrittenInItsLargestWholeUnit(double seconds, string written) =>
        Assert.Equal(written, Requests.WindowText(TimeSpan.FromSeconds(seconds)));
}
