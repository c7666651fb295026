using Shepherd.Engine.Dispatch;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class UsageReaderTests
{
    [Theory]
    [InlineData("""{"usage":{"prompt_tokens":120,"completion_tokens":30,"prompt_tokens_details":{"cached_tokens":100,"audio_tokens":0}}}""", 120, 30, 100)]
    [InlineData("""{"usage":{"input_tokens":100,"output_tokens":20,"input_tokens_details":{"cached_tokens":64}}}""", 100, 20, 64)]
    [InlineData("""{"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":200,"output_tokens":7}}""", 215, 7, 200)]
    [InlineData("""{"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":null}}""", 9, 1, 0)]
    [InlineData("""{"id":"x","choices":[]}""", 0, 0, 0)]
    public void Usage_IsReadWithTheCachedPartOfTheInput(string body, int input, int output, int cached)
    {
        Assert.True(UsageReader.TryRead(System.Text.Encoding.UTF8.GetBytes(body), out var i, out var o, out var c));
        Assert.Equal((input, output, cached), (i, o, c));
    }
}
