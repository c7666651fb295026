namespace Shepherd.Server.Http;

/// <summary>
/// A request the server refuses: answered with <see cref="Status"/> in the envelope of the
/// door it came in by. The message says what is wrong and, where it helps, how to fix it.
/// </summary>
internal sealed class ApiException : Exception
{
    public ApiException(int status, string message, string? param = null, string? code = null)
        : base(message)
    {
        Status = status;
        Param = param;
        Code = code;
    }

    public ApiException()
    {
    }

    public ApiException(string message)
        : base(message)
    {
    }

    public ApiException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The HTTP status.</summary>
    public int Status { get; } = 400;

    /// <summary>The request field the error is about, such as <c>metadata</c> or <c>requests[3]</c>.</summary>
    public string? Param { get; }

    /// <summary>A stable machine-readable code, such as <c>invalid_json</c>.</summary>
    public string? Code { get; }

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    /// <summary>
    /// A 400 for a batch refused for its requests: <paramref name="refusal"/> (what did not
    /// happen), the first few problems, and how many more there were.
    /// </summary>
    /// <summary>
    /// A 400 that lists the first few of <paramref name="problems"/> and says how many more there
    /// were: those not shown here and <paramref name="unlisted"/> found beyond them (null when
    /// reading stopped, so there may be more than anyone counted).
    /// </summary>
    public static ApiException Rejected(IReadOnlyList<string> problems, long? unlisted, string? param, string? code, string refusal = "The batch was not created")
    {
        const int shown = 5;
        var beyond = Math.Max(0, problems.Count - shown) + (unlisted ?? 0);
        var more = unlisted is null ? $" (and {(beyond > 0 ? $"{beyond:N0} " : "")}more errors; reading stopped there)"
            : beyond > 0 ? $" (and {beyond:N0} more error{(beyond == 1 ? "" : "s")})"
            : "";
        return BadRequest($"{refusal}: {string.Join("; ", problems.Take(shown))}{more}.", param, code);
    }

    public static ApiException NotFound(string message, string? param = null) => new(404, message, param);
}
