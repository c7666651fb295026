using System.Text;
using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Tests.Formats;

public sealed class ResultLineWriterTests
{
    private static async Task<JsonElement> WriteAsync(InputFormat format, ItemResult item)
    {
        using var writer = new ResultLineWriter(format, "batch_0123456789abcdef01234567");
        using var stream = new MemoryStream();
        await writer.WriteAsync(stream, item, TestContext.Current.CancellationToken);
        var text = Encoding.UTF8.GetString(stream.ToArray());
        Assert.EndsWith("\n", text, StringComparison.Ordinal);
        Assert.Equal(1, text.Count(c => c == '\n'));
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static ItemResult Item(ItemState state, AttemptResult result) => new(12, "cid-12", state, result);

    [Fact]
    public async Task OpenAISuccess_HasTheBatchOutputShape()
    {
        var line = await WriteAsync(InputFormat.OpenAI, Item(ItemState.Succeeded, new AttemptResult { StatusCode = 200, RequestId = "req_x", Body = """{"id":"chatcmpl-1","choices":[]}"""u8.ToArray() }));

        Assert.Equal(["id", "custom_id", "response", "error"], line.EnumerateObject().Select(p => p.Name));
        Assert.Equal("batch_req_0123456789abcdef012345670000000c", line.GetProperty("id").GetString());
        Assert.Equal("cid-12", line.GetProperty("custom_id").GetString());
        Assert.Equal(200, line.GetProperty("response").GetProperty("status_code").GetInt32());
        Assert.Equal("req_x", line.GetProperty("response").GetProperty("request_id").GetString());
        Assert.Equal("chatcmpl-1", line.GetProperty("response").GetProperty("body").GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task OpenAIHttpError_KeepsStatusAndBody()
    {
        var line = await WriteAsync(InputFormat.OpenAI, Item(ItemState.Failed, new AttemptResult { StatusCode = 400, Body = """{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"""u8.ToArray() }));

        Assert.Equal(400, line.GetProperty("response").GetProperty("status_code").GetInt32());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("response").GetProperty("request_id").ValueKind);
        Assert.Equal("bad", line.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task OpenAIFailureWithoutAnswer_HasAnErrorAndNoResponse()
    {
        var line = await WriteAsync(InputFormat.OpenAI, Item(ItemState.Failed, new AttemptResult { ErrorCode = "request_timeout", ErrorMessage = "no answer within 600 s" }));

        Assert.Equal(JsonValueKind.Null, line.GetProperty("response").ValueKind);
        Assert.Equal("request_timeout", line.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("no answer within 600 s", line.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task AnthropicSuccess_CarriesTheMessage()
    {
        var line = await WriteAsync(InputFormat.Anthropic, Item(ItemState.Succeeded, new AttemptResult { StatusCode = 200, Body = """{"id":"msg_1","type":"message"}"""u8.ToArray() }));

        Assert.Equal(["custom_id", "result"], line.EnumerateObject().Select(p => p.Name));
        Assert.Equal("succeeded", line.GetProperty("result").GetProperty("type").GetString());
        Assert.Equal("msg_1", line.GetProperty("result").GetProperty("message").GetProperty("id").GetString());
    }

    [Fact]
    public async Task AnthropicError_KeepsTheProvidersErrorObject()
    {
        var line = await WriteAsync(InputFormat.Anthropic, Item(ItemState.Failed, new AttemptResult
        {
            StatusCode = 400,
            RequestId = "req_7",
            Body = """{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"""u8.ToArray(),
        }));

        var result = line.GetProperty("result");
        Assert.Equal("errored", result.GetProperty("type").GetString());
        Assert.Equal("error", result.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", result.GetProperty("error").GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("max_tokens: too large", result.GetProperty("error").GetProperty("error").GetProperty("message").GetString());
        Assert.Equal("req_7", result.GetProperty("error").GetProperty("request_id").GetString());
    }

    [Theory]
    [InlineData(429, "rate_limit_error")]
    [InlineData(401, "authentication_error")]
    [InlineData(529, "overloaded_error")]
    [InlineData(502, "api_error")]
    public async Task AnthropicError_FromAnotherEnvelope_IsTypedByStatus(int status, string type)
    {
        var line = await WriteAsync(InputFormat.Anthropic, Item(ItemState.Failed, new AttemptResult
        {
            StatusCode = status,
            Body = """{"error":{"message":"slow down","type":"requests","param":null,"code":null}}"""u8.ToArray(),
        }));

        var error = line.GetProperty("result").GetProperty("error").GetProperty("error");
        Assert.Equal((type, "slow down"), (error.GetProperty("type").GetString(), error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task AnthropicFailureWithoutAnswer_IsAnApiError()
    {
        var line = await WriteAsync(InputFormat.Anthropic, Item(ItemState.Failed, new AttemptResult { ErrorCode = "connection_error", ErrorMessage = "reset" }));

        var error = line.GetProperty("result").GetProperty("error");
        Assert.Equal("api_error", error.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("connection_error: reset", error.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("request_id").ValueKind);
    }

    [Theory]
    [InlineData(ItemState.Cancelled, "batch_cancelled", "canceled")]
    [InlineData(ItemState.Expired, "batch_expired", "expired")]
    public async Task UnsentItems_OfCancelledOrExpiredBatches_SayWhy(ItemState state, string openAICode, string anthropicType)
    {
        var item = new ItemResult(3, "cid-3", state, null);

        var openAI = await WriteAsync(InputFormat.OpenAI, item);
        var anthropic = await WriteAsync(InputFormat.Anthropic, item);

        Assert.Equal(JsonValueKind.Null, openAI.GetProperty("response").ValueKind);
        Assert.Equal(openAICode, openAI.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(anthropicType, anthropic.GetProperty("result").GetProperty("type").GetString());
        Assert.Equal(["type"], anthropic.GetProperty("result").EnumerateObject().Select(p => p.Name));
    }

    private static AttemptResult Unfit(string body) => new()
    {
        StatusCode = 200, RequestId = "req_u", Body = Encoding.UTF8.GetBytes(body), Fits = false,
        ErrorCode = "invalid_output", ErrorMessage = "the answer does not fit the schema: /score: Value is \"string\" but should be \"integer\"",
    };

    [Fact]
    public async Task AnAnswerThatDidNotFit_KeepsTheLastAnswerAndSaysWhy_InBothFormats()
    {
        var openAI = await WriteAsync(InputFormat.OpenAI, Item(ItemState.Failed, Unfit("""{"id":"chatcmpl-9","choices":[]}""")));
        Assert.Equal(200, openAI.GetProperty("response").GetProperty("status_code").GetInt32());
        Assert.Equal("chatcmpl-9", openAI.GetProperty("response").GetProperty("body").GetProperty("id").GetString());
        Assert.Equal("invalid_output", openAI.GetProperty("error").GetProperty("code").GetString());
        Assert.StartsWith("the answer does not fit the schema: /score", openAI.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);

        var anthropic = await WriteAsync(InputFormat.Anthropic, Item(ItemState.Failed, Unfit("""{"id":"msg_9","type":"message","content":[]}""")));
        var result = anthropic.GetProperty("result");
        Assert.Equal("errored", result.GetProperty("type").GetString());
        Assert.Equal("invalid_output", result.GetProperty("error").GetProperty("error").GetProperty("type").GetString());
        Assert.StartsWith("the answer does not fit", result.GetProperty("error").GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("req_u", result.GetProperty("error").GetProperty("request_id").GetString());
        Assert.Equal("msg_9", result.GetProperty("message").GetProperty("id").GetString());
    }
}
